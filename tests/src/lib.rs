//! Shared helpers of the integration suites (simulated disk, workloads).
#![deny(missing_docs)]

pub mod fusefs;
pub mod model;
pub mod sim;
pub mod spec_reader;

pub use sim::SimDisk;
