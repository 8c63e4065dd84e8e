use std::process::ExitCode;

fn main() -> ExitCode {
    one_malloc_arena();
    hostrouter::cli::main()
}

/// glibc's malloc gives threads arenas of their own, and each arena keeps the memory it once
/// held: a render of a large route table on one worker thread and the next on another made the
/// operator hold two renders' worth (`make bench-cluster`, 10,000 Services, one router: peak
/// RSS 64.8 MiB with the default, 52.8 MiB with one arena). The operator's threads seldom
/// allocate at the same time, so one arena costs no measurable lock contention. Set before any
/// other thread starts. (The published image is a static musl binary: musl's allocator has no
/// arenas.)
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    // SAFETY: `mallopt` only sets an allocator parameter; no other thread exists yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}
