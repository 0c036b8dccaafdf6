//! The experiment runner behind the `itra` command line: experiment configurations, the training
//! loop, run directories with their provenance, and the paper's reported numbers.
//!
//! This is the one crate that combines the others (`itra-core` losses, `itra-models`
//! architectures, `itra-data` datasets) and the one that writes results. It never downloads data
//! itself; `itra-data` does.

pub mod bench;
pub mod config;
pub mod data_cli;
pub mod dataset;
pub mod device;
pub mod encode;
pub mod experiments;
pub mod figures;
pub mod metrics_table;
pub mod paper;
pub mod pipeline;
pub mod provenance;
pub mod run_lock;
pub mod synthetic;
pub mod text_train;
pub mod train;
pub mod vision_data;

pub use config::ExperimentConfig;
pub use dataset::DatasetId;
pub use device::DeviceSpec;
