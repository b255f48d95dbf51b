//! Tickets: one per append, completed by the writer thread (being written by the ticket work).
