//! What one GPU is, for placement and for listings: shared by the
//! inventory and the NVML probe that fills it.

/// One GPU as placement sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuInfo {
    /// The index CUDA and NVML use (what `CUDA_VISIBLE_DEVICES` names).
    pub index: u32,
    pub name: String,
    /// Total memory in GB (10^9 bytes), when known.
    pub vram_gb: Option<f64>,
    /// Lower case: `nvidia` for every GPU NVML finds.
    pub vendor: String,
}

/// A live reading of one GPU, where NVML gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct GpuReading {
    pub index: u32,
    pub memory_used_gb: f64,
    pub memory_total_gb: f64,
    /// Percent of time a kernel ran over the last sample period.
    pub utilization_percent: Option<u32>,
}
