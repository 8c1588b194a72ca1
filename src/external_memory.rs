//! Telling V8 how much memory a ring holds (`napi_adjust_external_memory`), so that forgotten
//! captures and injectors, each pinning megabytes of kernel memory behind a small JavaScript
//! object, make the garbage collector come round (and their finalizers close them) in time.

use napi::Env;

/// Bytes reported to V8 for one ring, withdrawn once.
pub struct ReportedMemory {
    bytes: i64,
}

impl ReportedMemory {
    /// Reports `bytes` as external memory held by a JavaScript object. Best effort: the report
    /// only steers the collector, so a failure is not an error.
    pub fn report(env: &Env, bytes: usize) -> ReportedMemory {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        match env.adjust_external_memory(bytes) {
            Ok(_) => ReportedMemory { bytes },
            Err(_) => ReportedMemory { bytes: 0 },
        }
    }

    /// Withdraws the report (on close, or in the finalizer). Idempotent.
    pub fn withdraw(&mut self, env: &Env) {
        if self.bytes != 0 {
            let _ = env.adjust_external_memory(-self.bytes);
            self.bytes = 0;
        }
    }
}
