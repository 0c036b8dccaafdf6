//! Weights in safetensors files under torchvision's `state_dict` names.
//!
//! The models mirror torchvision's module tree, so three mechanical differences remain, all
//! handled by `burn-store`:
//! - Burn puts enum variant names in paths (`ResNet.layer1.0.Basic.conv1.weight`); they are
//!   skipped (`skip_enum_variants`), giving `layer1.0.conv1.weight`.
//! - Burn stores linear weights as `[in, out]` and calls batch-norm affine parameters
//!   `gamma`/`beta`; [`PyTorchToBurnAdapter`] and [`BurnToPyTorchAdapter`] transpose and rename
//!   them to PyTorch's `[out, in]`, `weight`/`bias`. Running statistics are `running_mean` and
//!   `running_var` in both.
//! - torchvision saves each batch norm's `num_batches_tracked`, which Burn has no use for
//!   (momentum is fixed): it is ignored on load and not written on save.

use std::path::{Path, PathBuf};

use burn::store::{
    BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore, SafetensorsStoreError,
};

/// Why weights could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("cannot read or write weights at {path}")]
    Store {
        path: PathBuf,
        #[source]
        source: SafetensorsStoreError,
    },
    #[error("weights at {path} do not fit the model: missing {missing:?}, unexpected {unexpected:?}")]
    Mismatch { path: PathBuf, missing: Vec<String>, unexpected: Vec<String> },
}

/// The buffer torchvision keeps next to each batch norm's statistics.
const IGNORED_SUFFIX: &str = ".num_batches_tracked";

/// Loads a safetensors file with torchvision names (e.g. a converted `resnet18` `state_dict`)
/// into `model`, which must have the same shapes. Every tensor of the model must be present;
/// apart from `num_batches_tracked`, every tensor of the file must be used.
pub fn load_torchvision_safetensors<M: ModuleSnapshot>(model: &mut M, path: &Path) -> Result<(), WeightsError> {
    let mut store = SafetensorsStore::from_file(path)
        .with_from_adapter(PyTorchToBurnAdapter)
        .skip_enum_variants(true)
        .allow_partial(true);
    let result = model.load_from(&mut store).map_err(|source| WeightsError::Store { path: path.to_owned(), source })?;
    let missing: Vec<String> = result.missing.into_iter().map(|(path, _)| path).collect();
    let unexpected: Vec<String> = result.unused.into_iter().filter(|name| !name.ends_with(IGNORED_SUFFIX)).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(WeightsError::Mismatch { path: path.to_owned(), missing, unexpected });
    }
    Ok(())
}

/// Writes `model`'s parameters and running statistics to `path` under torchvision's names and
/// layouts, replacing any existing file.
pub fn save_torchvision_safetensors<M: ModuleSnapshot>(model: &M, path: &Path) -> Result<(), WeightsError> {
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true)
        .overwrite(true);
    model.save_into(&mut store).map_err(|source| WeightsError::Store { path: path.to_owned(), source })
}
