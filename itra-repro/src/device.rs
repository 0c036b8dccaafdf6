//! Run-time device selection: `--device cpu | cuda:N | tch-cpu | tch-cuda:N | wgpu[:N] |
//! wgpu-integrated:N | wgpu-cpu`.

use std::fmt;
use std::str::FromStr;

use anyhow::{Result, bail};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// A device named on the command line or in an experiment configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// `burn-flex` on the CPU (feature `flex`, the default).
    #[default]
    Cpu,
    /// Burn's CUDA backend on GPU `N` (feature `cuda`).
    Cuda(usize),
    /// libtorch on the CPU (feature `tch`).
    TchCpu,
    /// libtorch on CUDA GPU `N` (feature `tch`).
    TchCuda(usize),
    /// Burn's wgpu backend (feature `wgpu`: Vulkan, Metal, DX12 or WebGPU, whichever the machine
    /// offers) on the adapter `WgpuAdapter` names.
    Wgpu(WgpuAdapter),
}

/// Which wgpu adapter a [`DeviceSpec::Wgpu`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WgpuAdapter {
    /// wgpu's choice (a high-power GPU first; `CUBECL_WGPU_DEFAULT_DEVICE` overrides it).
    Default,
    /// The `N`th discrete GPU.
    Discrete(usize),
    /// The `N`th integrated GPU.
    Integrated(usize),
    /// A software adapter on the CPU, such as Mesa's lavapipe.
    Cpu,
}

impl DeviceSpec {
    /// The cargo feature that compiles this device in.
    pub fn feature(self) -> &'static str {
        match self {
            DeviceSpec::Cpu => "flex",
            DeviceSpec::Cuda(_) => "cuda",
            DeviceSpec::TchCpu | DeviceSpec::TchCuda(_) => "tch",
            DeviceSpec::Wgpu(_) => "wgpu",
        }
    }

    /// The backend's name, as recorded next to every result.
    pub fn backend(self) -> &'static str {
        match self {
            DeviceSpec::Cpu => "burn-flex",
            DeviceSpec::Cuda(_) => "burn-cuda",
            DeviceSpec::TchCpu | DeviceSpec::TchCuda(_) => "burn-tch",
            DeviceSpec::Wgpu(_) => "burn-wgpu",
        }
    }

    /// The inference device, or an error naming the feature this binary was built without.
    pub fn device(self) -> Result<Device> {
        match self {
            #[cfg(feature = "flex")]
            DeviceSpec::Cpu => Ok(Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(index) => Ok(Device::cuda(index)),
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            DeviceSpec::TchCpu => Ok(Device::libtorch()),
            #[cfg(feature = "tch")]
            #[allow(deprecated)]
            DeviceSpec::TchCuda(index) => Ok(Device::libtorch_cuda(index)),
            #[cfg(feature = "wgpu")]
            DeviceSpec::Wgpu(adapter) => {
                use burn::tensor::DeviceKind;
                Ok(Device::wgpu(match adapter {
                    WgpuAdapter::Default => DeviceKind::DefaultDevice,
                    WgpuAdapter::Discrete(index) => DeviceKind::DiscreteGpu(index),
                    WgpuAdapter::Integrated(index) => DeviceKind::IntegratedGpu(index),
                    WgpuAdapter::Cpu => DeviceKind::Cpu,
                }))
            }
            #[allow(unreachable_patterns)]
            other => bail!(
                "device `{other}` needs the `{}` feature, which this build of itra lacks; rebuild with \
                 `cargo build --release -p itra-repro --features {}`",
                other.feature(),
                other.feature()
            ),
        }
    }

    /// The training device: [`DeviceSpec::device`] with autodiff.
    pub fn autodiff_device(self) -> Result<Device> {
        Ok(self.device()?.autodiff())
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::TchCpu => f.write_str("tch-cpu"),
            DeviceSpec::TchCuda(i) => write!(f, "tch-cuda:{i}"),
            DeviceSpec::Wgpu(WgpuAdapter::Default) => f.write_str("wgpu"),
            DeviceSpec::Wgpu(WgpuAdapter::Discrete(i)) => write!(f, "wgpu:{i}"),
            DeviceSpec::Wgpu(WgpuAdapter::Integrated(i)) => write!(f, "wgpu-integrated:{i}"),
            DeviceSpec::Wgpu(WgpuAdapter::Cpu) => f.write_str("wgpu-cpu"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let index =
            |rest: &str| rest.parse::<usize>().map_err(|_| format!("device `{s}`: `{rest}` is not a GPU index"));
        match s {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            "tch-cpu" => Ok(DeviceSpec::TchCpu),
            "tch-cuda" => Ok(DeviceSpec::TchCuda(0)),
            "wgpu" => Ok(DeviceSpec::Wgpu(WgpuAdapter::Default)),
            "wgpu-cpu" => Ok(DeviceSpec::Wgpu(WgpuAdapter::Cpu)),
            _ => {
                if let Some(rest) = s.strip_prefix("cuda:") {
                    Ok(DeviceSpec::Cuda(index(rest)?))
                } else if let Some(rest) = s.strip_prefix("tch-cuda:") {
                    Ok(DeviceSpec::TchCuda(index(rest)?))
                } else if let Some(rest) = s.strip_prefix("wgpu-integrated:") {
                    Ok(DeviceSpec::Wgpu(WgpuAdapter::Integrated(index(rest)?)))
                } else if let Some(rest) = s.strip_prefix("wgpu:") {
                    Ok(DeviceSpec::Wgpu(WgpuAdapter::Discrete(index(rest)?)))
                } else {
                    Err(format!(
                        "unknown device `{s}`; expected cpu, cuda:N, tch-cpu, tch-cuda:N, wgpu, wgpu:N, \
                         wgpu-integrated:N or wgpu-cpu"
                    ))
                }
            }
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(value: DeviceSpec) -> Self {
        value.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_form() {
        for (text, spec) in [
            ("cpu", DeviceSpec::Cpu),
            ("cuda:1", DeviceSpec::Cuda(1)),
            ("tch-cpu", DeviceSpec::TchCpu),
            ("tch-cuda:0", DeviceSpec::TchCuda(0)),
            ("wgpu", DeviceSpec::Wgpu(WgpuAdapter::Default)),
            ("wgpu:1", DeviceSpec::Wgpu(WgpuAdapter::Discrete(1))),
            ("wgpu-integrated:0", DeviceSpec::Wgpu(WgpuAdapter::Integrated(0))),
            ("wgpu-cpu", DeviceSpec::Wgpu(WgpuAdapter::Cpu)),
        ] {
            assert_eq!(text.parse::<DeviceSpec>().unwrap(), spec);
            assert_eq!(spec.to_string(), text);
        }
        assert!("gpu".parse::<DeviceSpec>().unwrap_err().contains("unknown device"));
        assert!("cuda:x".parse::<DeviceSpec>().unwrap_err().contains("not a GPU index"));
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_device_not_compiled_in_names_its_feature() {
        let err = DeviceSpec::Cuda(0).device().unwrap_err().to_string();
        assert!(err.contains("`cuda` feature"), "{err}");
    }
}
