//! What the agent believes now: the processes, who holds which secret and how, the watch
//! list, the derived files and the trusted services, each kept true by the kernel's records.

pub mod derived_files;
pub mod outbound_streams;
pub mod process_table;
pub mod secret_catalog;
pub mod taint;
pub mod trusted_processes;
