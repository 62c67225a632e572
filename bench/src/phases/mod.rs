//! One file per phase of `make bench`, in the order they run.

pub mod buyers;
pub mod deployed;
pub mod expiry;
pub mod growth;
pub mod ops;
pub mod ratios;
pub mod scenario;
pub mod server_cpu;
pub mod stall;
pub mod throughput;
pub mod waiting;
pub mod waiting_steps;
