//! Which backend a device belongs to, for the operations that have a kernel of this workspace's
//! own on one backend and Burn's generic form everywhere else.

use burn::tensor::Device;

/// Whether `device` is burn-flex, with or without autodiff. Always `false` when this crate is
/// built without its `flex` feature.
pub fn is_flex(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        use burn::backend::DispatchDevice;
        match device.as_dispatch() {
            DispatchDevice::Flex(_) => true,
            DispatchDevice::Autodiff(inner) => matches!(**inner, DispatchDevice::Flex(_)),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
        false
    }
}
