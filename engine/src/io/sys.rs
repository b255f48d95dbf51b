//! Thin syscall wrappers (filled by the io backend work).
