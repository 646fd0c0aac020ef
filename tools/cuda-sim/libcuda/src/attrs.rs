//! Device attributes of the simulated device: an NVIDIA H200 (compute capability 9.0, 132 SMs).

/// Global memory reported (141 GiB; the simulator only allocates what is used).
pub const TOTAL_MEM: usize = 141 << 30;
pub const NAME: &str = "NVIDIA H200 (cuda-sim)";
pub const SMS: i32 = 132;

/// `CUdevice_attribute` value -> its value on an H200; unknown attributes are 0.
pub fn device_attribute(attr: u32, ordinal: i32) -> i32 {
    match attr {
        1 => 1024,              // MAX_THREADS_PER_BLOCK
        2 | 3 => 1024,          // MAX_BLOCK_DIM_X/Y
        4 => 64,                // MAX_BLOCK_DIM_Z
        5 => i32::MAX,          // MAX_GRID_DIM_X
        6 | 7 => 65535,         // MAX_GRID_DIM_Y/Z
        8 => 48 * 1024,         // MAX_SHARED_MEMORY_PER_BLOCK
        9 => 64 * 1024,         // TOTAL_CONSTANT_MEMORY
        10 => 32,               // WARP_SIZE
        11 => i32::MAX,         // MAX_PITCH
        12 => 65536,            // MAX_REGISTERS_PER_BLOCK
        13 => 1_980_000,        // CLOCK_RATE (kHz)
        14 => 512,              // TEXTURE_ALIGNMENT
        15 => 1,                // GPU_OVERLAP
        16 => SMS,              // MULTIPROCESSOR_COUNT
        19 => 1,                // CAN_MAP_HOST_MEMORY
        30 => 512,              // SURFACE_ALIGNMENT
        31 => 1,                // CONCURRENT_KERNELS
        32 => 1,                // ECC_ENABLED
        33 => 0x18 + ordinal,   // PCI_BUS_ID
        36 => 2_619_000,        // MEMORY_CLOCK_RATE (kHz)
        37 => 6144,             // GLOBAL_MEMORY_BUS_WIDTH
        38 => 50 * 1024 * 1024, // L2_CACHE_SIZE
        39 => 2048,             // MAX_THREADS_PER_MULTIPROCESSOR
        40 => 3,                // ASYNC_ENGINE_COUNT
        41 => 1,                // UNIFIED_ADDRESSING
        51 => 32,               // TEXTURE_PITCH_ALIGNMENT
        75 => 9,                // COMPUTE_CAPABILITY_MAJOR
        76 => 0,                // COMPUTE_CAPABILITY_MINOR
        78..=80 => 1,           // STREAM_PRIORITIES, GLOBAL_L1_CACHE, LOCAL_L1_CACHE supported
        81 => 228 * 1024,       // MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
        82 => 65536,            // MAX_REGISTERS_PER_MULTIPROCESSOR
        83 => 1,                // MANAGED_MEMORY
        87 => 2,                // SINGLE_TO_DOUBLE_PRECISION_PERF_RATIO
        89 | 90 => 1,           // CONCURRENT_MANAGED_ACCESS, COMPUTE_PREEMPTION_SUPPORTED
        95 => 1,                // COOPERATIVE_LAUNCH
        97 => 227 * 1024,       // MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
        99 => 1,                // HOST_REGISTER_SUPPORTED
        102 => 1,               // VIRTUAL_ADDRESS_MANAGEMENT_SUPPORTED
        106 => 32,              // MAX_BLOCKS_PER_MULTIPROCESSOR
        108 => 78_643_200,      // MAX_PERSISTING_L2_CACHE_SIZE
        109 => 134_213_632,     // MAX_ACCESS_POLICY_WINDOW_SIZE
        111 => 1024,            // RESERVED_SHARED_MEMORY_PER_BLOCK
        115 => 1,               // MEMORY_POOLS_SUPPORTED
        119 => 1,               // MEMPOOL_SUPPORTED_HANDLE_TYPES (posix fd)
        120 => 1,               // CLUSTER_LAUNCH
        126 => 4,               // MEM_SYNC_DOMAIN_COUNT
        _ => 0,
    }
}
