//! Files written whole or not at all.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `<path>.<pid>.<n>.partial`, then renames it to `path`, so that a reader never sees a
/// half-written file under the final name.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // Unique to this writer (process and call), so that no two writers share a temporary.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut temporary = path.as_os_str().to_owned();
    let call = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    temporary.push(format!(".{}.{call}.partial", std::process::id()));
    let temporary = std::path::PathBuf::from(temporary);
    fs::write(&temporary, bytes).with_context(|| format!("cannot write {}", temporary.display()))?;
    fs::rename(&temporary, path).with_context(|| format!("cannot write {}", path.display()))
}
