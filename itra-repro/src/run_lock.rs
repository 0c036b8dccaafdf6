//! The exclusive lock of a run directory, so that two processes (on one machine, or on two
//! machines sharing a file system) never write one run at once.
//!
//! `<run>/lock` carries two guards:
//! - an OS lock (`flock`), which local file systems and NFSv4 enforce and release when the
//!   holder dies however it dies;
//! - a **lease record** in the file (`host`, `pid`, start, last renewal, lease length), renewed
//!   by a background thread every quarter lease. It names the holder in every refusal, lets a
//!   later process say that it takes over from a holder that ended without releasing, and guards
//!   file systems whose `flock` does not reach across hosts (NFS mounted `local_lock=flock`, or
//!   with no lock support at all): a live lease of another host is refused even when `flock` is
//!   granted.
//!
//! Where the file system has no `flock` at all, or with `ITRA_RUN_LOCK=lease`, the lease record
//! alone decides: a record that is released, expired, or held by a dead process of this host is
//! taken over by writing ours, waiting [`SETTLE`], and reading it back. The lock file is never
//! deleted or replaced (a new inode would let a newcomer lock it while the holder locks the old
//! one); it is rewritten in place, and an empty or released record means free.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The lock file of a run directory.
pub const LOCK: &str = "lock";

/// How long a lease lasts without renewal, unless `ITRA_RUN_LOCK_LEASE` (seconds) says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);

/// How long the lease protocol waits before reading its record back, to see another taker's
/// write that raced with its own.
pub const SETTLE: Duration = Duration::from_millis(300);

/// How the lock is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// `flock`, with the lease record as a cross-host guard.
    Flock,
    /// The lease record alone.
    Lease,
}

/// The holder's record, the lock file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// Unique to this acquisition (host, pid and clock), so that a takeover is noticed.
    pub token: String,
    pub started_unix: u64,
    pub renewed_unix: u64,
    pub lease_seconds: u64,
    /// Set when the holder let go of the lock normally.
    #[serde(default)]
    pub released: bool,
}

impl Holder {
    fn describe(&self) -> String {
        format!("pid {} on host {}", self.pid, self.host)
    }

    /// Seconds since the last renewal, and whether the lease has run out at `now`.
    fn age(&self, now: u64) -> (u64, bool) {
        let age = now.saturating_sub(self.renewed_unix);
        (age, age > self.lease_seconds)
    }

    /// Whether the holder is certainly gone: it released the lock, its lease ran out, or it
    /// was a process of this host that no longer exists.
    fn is_gone(&self, now: u64, host: &str) -> bool {
        self.released || self.age(now).1 || (self.host == host && !process_alive(self.pid))
    }
}

/// A held run lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    shared: Arc<Shared>,
    stop: Option<mpsc::Sender<()>>,
    heartbeat: Option<JoinHandle<()>>,
    /// What the acquisition found and said (a takeover, the lease-only mode), for the caller.
    pub notes: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    file: Mutex<File>,
    holder: Mutex<Holder>,
    lost: AtomicBool,
    lost_to: Mutex<Option<Holder>>,
}

impl RunLock {
    /// Takes `<run_dir>/lock` with the mode of `ITRA_RUN_LOCK` (`flock`, the default, or
    /// `lease`) and the lease of `ITRA_RUN_LOCK_LEASE`, or fails naming the holder.
    pub fn acquire(run_dir: &Path) -> Result<RunLock> {
        let mode = match std::env::var("ITRA_RUN_LOCK").as_deref() {
            Err(_) | Ok("" | "flock") => LockMode::Flock,
            Ok("lease") => LockMode::Lease,
            Ok(other) => bail!("ITRA_RUN_LOCK is `{other}`; expected `flock` or `lease`"),
        };
        let lease = match std::env::var("ITRA_RUN_LOCK_LEASE") {
            Err(_) => DEFAULT_LEASE,
            Ok(text) => match text.parse::<u64>() {
                Ok(seconds) if seconds >= 1 => Duration::from_secs(seconds),
                _ => bail!("ITRA_RUN_LOCK_LEASE is `{text}`; expected a whole number of seconds, at least 1"),
            },
        };
        RunLock::acquire_with(run_dir, mode, lease)
    }

    /// [`RunLock::acquire`] with an explicit mode and lease.
    pub fn acquire_with(run_dir: &Path, mode: LockMode, lease: Duration) -> Result<RunLock> {
        let path = run_dir.join(LOCK);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the run lock {}", path.display()))?;
        let mut notes = Vec::new();
        let mut mode = mode;
        let host = host_name();
        if mode == LockMode::Flock {
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    let holder = read_flock_holder(&mut file);
                    bail!("{}", busy_message(run_dir, holder.as_ref(), unix_now()));
                }
                Err(fs::TryLockError::Error(err))
                    if matches!(err.kind(), std::io::ErrorKind::Unsupported) || err.raw_os_error() == Some(37) =>
                {
                    // ENOLCK (37 on Linux) or no flock at all: the lease record decides alone.
                    notes.push(format!(
                        "the file system of {} has no file locks ({err}); using the lease record alone",
                        path.display()
                    ));
                    mode = LockMode::Lease;
                }
                Err(fs::TryLockError::Error(err)) => {
                    return Err(err).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
        }
        let now = unix_now();
        let previous = read_holder_settled(&mut file);
        if let Some(previous) = &previous
            && !previous.released
        {
            // Under flock, a live record of this host cannot exist (its process would hold the
            // flock), so only another host's live lease is refused.
            let live = match mode {
                LockMode::Flock => previous.host != host && !previous.age(now).1,
                LockMode::Lease => !previous.is_gone(now, &host),
            };
            if live {
                bail!("{}", busy_message(run_dir, Some(previous), now));
            }
            let (age, expired) = previous.age(now);
            let why = if expired {
                format!("its lease expired (last renewed {age} s ago, lease {} s)", previous.lease_seconds)
            } else {
                "it ended without releasing it".to_owned()
            };
            notes.push(format!("taking over the lock of {} from {}: {why}", run_dir.display(), previous.describe()));
        }
        let holder = Holder {
            host: host.clone(),
            pid: std::process::id(),
            token: format!("{host}-{}-{}", std::process::id(), now_nanos()),
            started_unix: now,
            renewed_unix: now,
            lease_seconds: lease.as_secs().max(1),
            released: false,
        };
        write_holder(&mut file, &holder).with_context(|| format!("cannot write the run lock {}", path.display()))?;
        if mode == LockMode::Lease {
            std::thread::sleep(SETTLE);
            match read_holder(&mut file) {
                Some(now_there) if now_there.token == holder.token => {}
                other => bail!(
                    "{} (it took the lock at the same moment as this process)",
                    busy_message(run_dir, other.as_ref(), unix_now())
                ),
            }
        }
        let shared = Arc::new(Shared {
            file: Mutex::new(file),
            holder: Mutex::new(holder),
            lost: AtomicBool::new(false),
            lost_to: Mutex::new(None),
        });
        let (stop, stopped) = mpsc::channel::<()>();
        let heartbeat = {
            let shared = Arc::clone(&shared);
            let every = (lease / 4).max(Duration::from_millis(250));
            std::thread::Builder::new()
                .name("itra-run-lock".to_owned())
                .spawn(move || {
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                        shared.renew();
                    }
                })
                .context("cannot start the run lock's renewal thread")?
        };
        Ok(RunLock { path, shared, stop: Some(stop), heartbeat: Some(heartbeat), notes })
    }

    /// The holder record this lock wrote.
    pub fn holder(&self) -> Holder {
        self.shared.holder.lock().map(|h| h.clone()).unwrap_or_else(|e| e.into_inner().clone())
    }

    /// Fails if another process has taken the lock over since it was acquired (its lease ran
    /// out while this process was stopped, say): the run must not write another byte.
    pub fn check(&self) -> Result<()> {
        if self.shared.lost.load(Ordering::SeqCst) {
            let by = self.shared.lost_to.lock().ok().and_then(|h| h.clone());
            bail!(
                "lost the run lock {} to {}; this process stops writing the run",
                self.path.display(),
                by.map_or("another process".to_owned(), |h| h.describe())
            );
        }
        Ok(())
    }
}

impl Shared {
    /// Re-reads the record; renews it if it is still ours, and marks the lock lost otherwise.
    fn renew(&self) {
        let Ok(mut file) = self.file.lock() else { return };
        let Ok(mut holder) = self.holder.lock() else { return };
        match read_holder(&mut file) {
            Some(there) if there.token == holder.token => {
                holder.renewed_unix = unix_now();
                let _ = write_holder(&mut file, &holder);
            }
            // A record cut mid-write by a concurrent reader's view is not proof of loss.
            None => {}
            Some(there) => {
                self.lost.store(true, Ordering::SeqCst);
                if let Ok(mut lost_to) = self.lost_to.lock() {
                    *lost_to = Some(there);
                }
            }
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.join();
        }
        if self.shared.lost.load(Ordering::SeqCst) {
            return;
        }
        if let (Ok(mut file), Ok(mut holder)) = (self.shared.file.lock(), self.shared.holder.lock()) {
            if read_holder(&mut file).is_some_and(|there| there.token == holder.token) {
                holder.released = true;
                holder.renewed_unix = unix_now();
                let _ = write_holder(&mut file, &holder);
            }
            // The flock goes with the file descriptor, closed when `shared` is dropped.
        }
    }
}

/// The process that holds `<run_dir>/lock` now, as far as its record tells: not released, its
/// lease not run out, and (on this host) still alive. Only reads the record, never the file
/// lock, so it cannot get in the way of a process that is taking the lock.
pub fn live_holder(run_dir: &Path) -> Option<Holder> {
    let mut file = File::open(run_dir.join(LOCK)).ok()?;
    let holder = read_holder(&mut file)?;
    (!holder.is_gone(unix_now(), &host_name())).then_some(holder)
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (age, _) = self.age(unix_now());
        write!(f, "{}, lease renewed {age} s ago", self.describe())
    }
}

fn busy_message(run_dir: &Path, holder: Option<&Holder>, now: u64) -> String {
    let who = match holder {
        Some(holder) => {
            let (age, expired) = holder.age(now);
            let lease = if expired {
                format!(
                    "its lease expired {} s ago, but it still holds the file lock: it may be stopped or hung",
                    age - holder.lease_seconds
                )
            } else {
                format!("lease renewed {age} s ago, {} s long", holder.lease_seconds)
            };
            format!("{}, started at unix time {}; {lease}", holder.describe(), holder.started_unix)
        }
        None => "holder unknown".to_owned(),
    };
    format!(
        "run directory {} is in use by another process ({who}); wait for it to finish or stop it",
        run_dir.display()
    )
}

/// [`read_holder`], retried a few times while the file holds something unreadable: the holder
/// may be rewriting its record this very moment. Garbage that stays garbage holds nothing.
fn read_holder_settled(file: &mut File) -> Option<Holder> {
    for _ in 0..5 {
        if let Some(holder) = read_holder(file) {
            return Some(holder);
        }
        if file.metadata().map_or(true, |m| m.len() == 0) {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The record of the process that holds the flock. It writes its record just after taking the
/// flock, so a newcomer refused in between sees an empty file or the previous holder's released
/// record: wait for the live record a little while, so that the refusal names the holder.
fn read_flock_holder(file: &mut File) -> Option<Holder> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let holder = read_holder(file);
        if holder.as_ref().is_some_and(|h| !h.released) || std::time::Instant::now() >= deadline {
            return holder.filter(|h| !h.released);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

/// Rewrites the record in place: the file (and the inode the flock is on) stays the same.
fn write_holder(file: &mut File, holder: &Holder) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(holder).map_err(std::io::Error::other)?;
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&bytes)?;
    file.write_all(b"\n")?;
    file.sync_data()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// This machine's name (Linux `/proc/sys/kernel/hostname`, else `$HOSTNAME`).
pub fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".to_owned())
}

/// Whether process `pid` of this host exists. Without `/proc`, every process counts as alive,
/// so only a lease's expiry frees its lock.
fn process_alive(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASE: Duration = Duration::from_secs(60);

    fn write_record(dir: &Path, holder: &Holder) {
        fs::write(dir.join(LOCK), serde_json::to_vec(holder).unwrap()).unwrap();
    }

    fn record(host: &str, pid: u32, renewed_ago: u64, released: bool) -> Holder {
        let now = unix_now();
        Holder {
            host: host.to_owned(),
            pid,
            token: "someone-else".to_owned(),
            started_unix: now - renewed_ago - 10,
            renewed_unix: now - renewed_ago,
            lease_seconds: 60,
            released,
        }
    }

    #[test]
    fn a_held_lock_is_refused_naming_its_holder_and_freed_on_drop() {
        for mode in [LockMode::Flock, LockMode::Lease] {
            let dir = tempfile::tempdir().unwrap();
            let held = RunLock::acquire_with(dir.path(), mode, LEASE).unwrap();
            let err = RunLock::acquire_with(dir.path(), mode, LEASE).unwrap_err().to_string();
            assert!(err.contains("in use by another process"), "{mode:?}: {err}");
            assert!(err.contains(&format!("pid {} on host {}", std::process::id(), host_name())), "{mode:?}: {err}");
            drop(held);
            let record: Holder = serde_json::from_slice(&fs::read(dir.path().join(LOCK)).unwrap()).unwrap();
            assert!(record.released, "{mode:?}: a dropped lock says it was released");
            let again = RunLock::acquire_with(dir.path(), mode, LEASE).expect("free again once released");
            assert!(again.notes.is_empty(), "{mode:?}: a released lock is not a takeover: {:?}", again.notes);
        }
    }

    #[test]
    fn a_newcomer_between_the_holders_flock_and_its_record_still_names_the_holder() {
        // The previous holder released; the new one has the flock but writes its record 200 ms
        // later (the window in which a second `itra run` once reported "holder unknown").
        let dir = tempfile::tempdir().unwrap();
        write_record(dir.path(), &record(&host_name(), 4242, 1, true));
        let file = fs::OpenOptions::new().read(true).write(true).open(dir.path().join(LOCK)).unwrap();
        file.try_lock().unwrap();
        let late = record(&host_name(), std::process::id(), 0, false);
        let writer = {
            let dir = dir.path().to_owned();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                write_record(&dir, &late);
            })
        };
        let err = RunLock::acquire_with(dir.path(), LockMode::Flock, LEASE).unwrap_err().to_string();
        writer.join().unwrap();
        assert!(err.contains(&format!("pid {} on host {}", std::process::id(), host_name())), "{err}");
        drop(file);
    }

    #[test]
    fn a_dead_holder_is_taken_over_and_said_so() {
        // A pid far above Linux's pid_max (4194304) never exists.
        for mode in [LockMode::Flock, LockMode::Lease] {
            let dir = tempfile::tempdir().unwrap();
            write_record(dir.path(), &record(&host_name(), 999_999_999, 1, false));
            let lock = RunLock::acquire_with(dir.path(), mode, LEASE).unwrap();
            let note = lock.notes.join("\n");
            assert!(note.contains("taking over") && note.contains("ended without releasing"), "{mode:?}: {note}");
            assert!(note.contains("pid 999999999"), "{mode:?}: {note}");
        }
    }

    #[test]
    fn another_hosts_live_lease_is_refused_even_when_flock_is_granted() {
        // Under NFS with local_lock=flock every host gets the flock: the lease must still hold.
        for mode in [LockMode::Flock, LockMode::Lease] {
            let dir = tempfile::tempdir().unwrap();
            write_record(dir.path(), &record("node-b", 4242, 5, false));
            let err = RunLock::acquire_with(dir.path(), mode, LEASE).unwrap_err().to_string();
            assert!(
                err.contains("pid 4242 on host node-b") && err.contains("lease renewed 5 s ago"),
                "{mode:?}: {err}"
            );
        }
    }

    #[test]
    fn an_expired_lease_of_another_host_is_taken_over() {
        for mode in [LockMode::Flock, LockMode::Lease] {
            let dir = tempfile::tempdir().unwrap();
            write_record(dir.path(), &record("node-b", 4242, 600, false));
            let lock = RunLock::acquire_with(dir.path(), mode, LEASE).unwrap();
            let note = lock.notes.join("\n");
            assert!(note.contains("lease expired (last renewed 600 s ago, lease 60 s)"), "{mode:?}: {note}");
            assert_eq!(lock.holder().host, host_name());
        }
    }

    #[test]
    fn the_lease_is_renewed_and_a_lock_taken_over_behind_its_back_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        // A 1 s lease renews every 250 ms.
        let lock = RunLock::acquire_with(dir.path(), LockMode::Lease, Duration::from_secs(1)).unwrap();
        let first = lock.holder().renewed_unix;
        std::thread::sleep(Duration::from_millis(1600));
        assert!(lock.holder().renewed_unix > first, "renewed while held");
        lock.check().unwrap();
        // Another host overwrites the record, as a taker of an expired lease would.
        write_record(dir.path(), &record("node-b", 4242, 0, false));
        std::thread::sleep(Duration::from_millis(800));
        let err = lock.check().unwrap_err().to_string();
        assert!(err.contains("lost the run lock") && err.contains("pid 4242 on host node-b"), "{err}");
        drop(lock);
        let record: Holder = serde_json::from_slice(&fs::read(dir.path().join(LOCK)).unwrap()).unwrap();
        assert_eq!(record.host, "node-b", "a lost lock does not overwrite the new holder's record");
    }

    #[test]
    fn a_garbled_record_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(LOCK), b"pid 12").unwrap();
        RunLock::acquire_with(dir.path(), LockMode::Lease, LEASE).expect("an unreadable record holds nothing");
    }
}
