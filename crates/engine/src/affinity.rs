//! CPU affinity of the calling thread, for pools that put one capture per core.

use crate::error::{Error, Result, Subject};
use crate::reactor::Reactor;

/// The CPUs this thread may run on (its affinity mask), ascending.
pub fn allowed_cpus() -> Result<Vec<usize>> {
    // SAFETY: a zeroed cpu_set_t is an empty set; the kernel fills at most its size.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return Err(Error::last("sched_getaffinity", Subject::Option("pinCpus"), "reading this thread's CPU affinity"));
    }
    // SAFETY: CPU_ISSET only reads the set, and every index is below CPU_SETSIZE.
    Ok((0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) }).collect())
}

/// Pins the calling thread to one CPU.
///
/// The process-wide wait thread is started first: a thread inherits the affinity of the thread
/// that creates it, and the wait thread serves every capture of the process, so it must not
/// inherit one worker's CPU.
pub fn pin_current_thread(cpu: usize) -> Result<()> {
    Reactor::global()?;
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(Error::invalid_option("pinCpus", format!("CPU {cpu} is beyond CPU_SETSIZE")));
    }
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes one bit inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; the pointer and size describe `set`.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        let e =
            Error::last("sched_setaffinity", Subject::Option("pinCpus"), format!("pinning this thread to CPU {cpu}"));
        return Err(e.with_hint("the CPU must be online and in the process's allowed set (taskset, cgroup cpuset)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_a_thread_to_an_allowed_cpu_and_refuses_one_that_does_not_exist() {
        std::thread::spawn(|| {
            let allowed = allowed_cpus().unwrap();
            assert!(!allowed.is_empty());
            let cpu = *allowed.last().unwrap();
            pin_current_thread(cpu).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![cpu]);
            // No machine this runs on has CPU 1023 online: the kernel refuses it with EINVAL.
            assert_eq!(pin_current_thread(1023).unwrap_err().errno, crate::error::Errno::EINVAL);
            assert_eq!(allowed_cpus().unwrap(), vec![cpu]);
        })
        .join()
        .unwrap();
    }
}
