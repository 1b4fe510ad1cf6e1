//! Settings of glibc's allocator for a process that fills and frees column buffers all the time.
//!
//! Decoding grows Arrow builders and the writer Parquet pages of up to a few MiB, freed as soon
//! as their rows are written. With glibc's defaults a freed buffer above the (moving) mmap
//! threshold goes back to the kernel, and so does the free top of a heap, so the next buffer
//! faults in freshly zeroed pages again: system time was 14% of an Atlas audit ingest's CPU, and
//! half of it went once [`tune`] kept freed memory for reuse (up to a bound per arena) and
//! capped the arenas at one per core, which also lowered the peak RSS (fewer arenas each holding
//! free memory).
//! A `GLIBC_TUNABLES` setting of the allocator, if any, is left to win.

/// Buffers up to this size come from the heap, not from a mapping of their own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: i32 = 32 << 20;
/// Free memory an arena keeps at its top before giving it back to the kernel: room for the
/// buffers of a step or two, not for every buffer the process ever freed (each arena keeps its
/// own, and they count in the process's memory).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD_BYTES: i32 = 32 << 20;

/// Applies the settings; call first thing in `main`, before any other thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.")) {
            return;
        }
        let arenas = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(2);
        set(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        set(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES);
        set(libc::M_ARENA_MAX, i32::try_from(arenas).unwrap_or(i32::MAX));
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set(parameter: i32, value: i32) {
    // SAFETY: mallopt only changes allocator parameters and is called from `main` before other
    // threads exist. A value it refuses (it returns 0) leaves glibc's default in place, which
    // is only slower: nothing to report.
    unsafe { libc::mallopt(parameter, value) };
}

/// Bytes the allocator has handed out and not had back (heap and its own mappings): what the
/// process really holds, unlike its RSS, which keeps the freed buffers [`tune`] keeps for reuse.
/// `None` where glibc does not say.
pub fn heap_in_use() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let info = mallinfo();
        Some(info.uordblks.saturating_add(info.hblkhd))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn mallinfo() -> libc::mallinfo2 {
    // SAFETY: mallinfo2 takes no argument and returns a plain struct of counters; glibc locks
    // each arena while it reads it.
    unsafe { libc::mallinfo2() }
}

#[cfg(test)]
mod tests {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn the_heap_in_use_counts_a_buffer_while_it_is_held() {
        let before = super::heap_in_use().expect("glibc");
        let buffer = vec![1u8; 64 << 20];
        let held = super::heap_in_use().expect("glibc");
        assert!(held >= before + (60 << 20), "{before} -> {held}");
        drop(std::hint::black_box(buffer));
        let after = super::heap_in_use().expect("glibc");
        assert!(after + (60 << 20) <= held, "{held} -> {after}");
    }
}
