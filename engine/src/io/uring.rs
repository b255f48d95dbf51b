//! io_uring batch backend (filled by the io backend work).
