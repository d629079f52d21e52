//! Device selection and a description of the tensor runtime.

use std::fmt;
use std::str::FromStr;

use tch::{Device, Kind, Tensor};

/// The version of PyTorch that `tch` 0.24 is built against; the set-up installs exactly this.
pub const TORCH_VERSION: &str = "2.11.0";

/// A device request as a user writes it: `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceRequest {
    /// CUDA device 0 when available, otherwise the CPU.
    Auto,
    Cpu,
    Cuda(usize),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("unknown device {0:?}: expected auto, cpu, cuda or cuda:N")]
    Unknown(String),
    #[error("device cuda:{requested} requested but {available} CUDA device(s) are available")]
    Unavailable { requested: usize, available: usize },
}

impl FromStr for DeviceRequest {
    type Err = DeviceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::Unknown(s.to_string())),
        }
    }
}

impl DeviceRequest {
    /// Resolves the request against the devices this process can see.
    pub fn resolve(self) -> Result<Device, DeviceError> {
        let available = if tch::Cuda::is_available() {
            tch::Cuda::device_count().max(0) as usize
        } else {
            0
        };
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto if available > 0 => Ok(Device::Cuda(0)),
            Self::Auto => Ok(Device::Cpu),
            Self::Cuda(i) if i < available => Ok(Device::Cuda(i)),
            Self::Cuda(requested) => Err(DeviceError::Unavailable {
                requested,
                available,
            }),
        }
    }
}

/// What the linked tensor runtime offers on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    pub torch_version: &'static str,
    pub cuda_devices: usize,
    pub cudnn: bool,
    pub cpu_threads: i32,
}

impl RuntimeInfo {
    pub fn probe() -> Self {
        let cuda = tch::Cuda::is_available();
        Self {
            torch_version: TORCH_VERSION,
            cuda_devices: if cuda {
                tch::Cuda::device_count().max(0) as usize
            } else {
                0
            },
            cudnn: cuda && tch::Cuda::cudnn_is_available(),
            cpu_threads: tch::get_num_threads(),
        }
    }
}

impl fmt::Display for RuntimeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "libtorch {} (tch 0.24.0), CUDA devices: {}, cuDNN: {}, CPU threads: {}",
            self.torch_version,
            self.cuda_devices,
            if self.cudnn { "yes" } else { "no" },
            self.cpu_threads
        )
    }
}

/// A small computation that exercises the tensor runtime end to end on `device`:
/// softmax of `[[1, 2, 3], [0, 0, 0]]` multiplied by a fixed matrix, returned as nested vectors.
/// Used by `labor env --check` and by tests to prove the toolchain works.
pub fn self_check(device: Device) -> Vec<Vec<f64>> {
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 0.0, 0.0, 0.0])
        .reshape([2, 3])
        .to_device(device);
    let w = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 1.0])
        .reshape([3, 2])
        .to_device(device);
    let y = x.softmax(-1, Kind::Float).matmul(&w).to_device(Device::Cpu);
    (0..2)
        .map(|i| (0..2).map(|j| y.double_value(&[i, j])).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_requests() {
        assert_eq!("auto".parse(), Ok(DeviceRequest::Auto));
        assert_eq!("CPU".parse(), Ok(DeviceRequest::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceRequest::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceRequest::Cuda(3)));
        assert!("tpu".parse::<DeviceRequest>().is_err());
        assert!("cuda:x".parse::<DeviceRequest>().is_err());
    }

    #[test]
    fn cpu_always_resolves_and_absent_cuda_is_an_error() {
        assert_eq!(DeviceRequest::Cpu.resolve(), Ok(Device::Cpu));
        let n = RuntimeInfo::probe().cuda_devices;
        assert_eq!(
            DeviceRequest::Cuda(n).resolve(),
            Err(DeviceError::Unavailable {
                requested: n,
                available: n
            })
        );
    }

    #[test]
    fn tensor_runtime_computes_softmax_matmul() {
        // softmax([1,2,3]) = [e^1, e^2, e^3] / sum; column 0 sums entries 0 and 2, column 1
        // entries 1 and 2. The second row is uniform: [2/3, 2/3].
        let z: f64 = [1.0f64, 2.0, 3.0].iter().map(|v| v.exp()).sum();
        let (p0, p1, p2) = (1f64.exp() / z, 2f64.exp() / z, 3f64.exp() / z);
        let y = self_check(Device::Cpu);
        let want = [[p0 + p2, p1 + p2], [2.0 / 3.0, 2.0 / 3.0]];
        for i in 0..2 {
            for j in 0..2 {
                assert!((y[i][j] - want[i][j]).abs() < 1e-6, "{y:?} vs {want:?}");
            }
        }
    }
}
