//! Real filesystem storage (filled by the io backend work).
