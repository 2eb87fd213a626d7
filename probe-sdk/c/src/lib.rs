//! The C SDK for gala-gopher probes: the functions of `include/gala_probe.h`, each a thin
//! wrapper over [`gala_probe_sdk`], so the C library behaves exactly like the Rust one.
//!
//! Every entry point checks its pointers for NULL and its strings for UTF-8, reports failure
//! by its return value plus a thread-local message (`gala_probe_last_error`), and runs its
//! body under [`std::panic::catch_unwind`]: a bug in the SDK becomes an error return, never
//! an unwind into C (which would be undefined behaviour).

#![warn(missing_docs)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_long, c_uint, CStr, CString};
use std::fmt::Display;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use gala_probe_sdk::{Event, Level, Probe, Severity, Wake};

/// The SDK named in the daemon's `Hello`.
pub const C_SDK_VERSION: &str = concat!("c-", env!("CARGO_PKG_VERSION"));

/// `GALA_WAKE_TIMEOUT`.
pub const GALA_WAKE_TIMEOUT: c_int = 0;
/// `GALA_WAKE_CONFIG`.
pub const GALA_WAKE_CONFIG: c_int = 1;
/// `GALA_WAKE_STOP`.
pub const GALA_WAKE_STOP: c_int = 2;

/// `GALA_SEV_INFO`.
pub const GALA_SEV_INFO: c_int = 9;
/// `GALA_SEV_WARN`.
pub const GALA_SEV_WARN: c_int = 13;
/// `GALA_SEV_ERROR`.
pub const GALA_SEV_ERROR: c_int = 17;
/// `GALA_SEV_FATAL`.
pub const GALA_SEV_FATAL: c_int = 21;

/// `GALA_LEVEL_INFO`.
pub const GALA_LEVEL_INFO: c_int = 1;
/// `GALA_LEVEL_WARN`.
pub const GALA_LEVEL_WARN: c_int = 2;
/// `GALA_LEVEL_ERROR`.
pub const GALA_LEVEL_ERROR: c_int = 3;

/// What C knows as the opaque `gala_probe`.
pub struct ProbeHandle {
    probe: Probe,
}

/// `struct gala_event` of the header.
#[repr(C)]
pub struct GalaEvent {
    /// `sizeof(struct gala_event)` as the program was built: the ABI version.
    pub size: u32,
    /// Required.
    pub entity_name: *const c_char,
    /// Required.
    pub entity_id: *const c_char,
    /// Required.
    pub metric: *const c_char,
    /// Free text, escaped; NULL = empty.
    pub message: *const c_char,
    /// One of the `GALA_SEV_*` numbers.
    pub severity: c_int,
    /// 0 = none.
    pub pid: u32,
    /// NULL = empty (looked up for a pid).
    pub comm: *const c_char,
    /// NULL = empty.
    pub ip: *const c_char,
    /// NULL = empty (looked up for a pid).
    pub container_id: *const c_char,
    /// NULL = empty.
    pub pod_id: *const c_char,
    /// NULL = empty.
    pub device: *const c_char,
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Why a call failed, as shown by `gala_probe_last_error`.
struct Failure(String);

impl<E: Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

type Outcome<T> = Result<T, Failure>;

fn set_last_error(text: &str) {
    let text = CString::new(text.replace('\0', " ")).unwrap_or_default();
    // Ignored only while this thread is being torn down, when nobody can read it anyway.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = text);
}

/// Runs an entry point's body: `Ok` is returned, an error or a panic becomes `failed` with
/// the reason kept for `gala_probe_last_error`.
fn entry<T>(failed: T, body: impl FnOnce() -> Outcome<T>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => v,
        Ok(Err(Failure(why))) => {
            set_last_error(&why);
            failed
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".to_owned());
            set_last_error(&format!("internal error in the probe SDK: {what}"));
            failed
        }
    }
}

/// A required C string as `&str`.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives `'a`.
unsafe fn text<'a>(ptr: *const c_char, what: &str) -> Outcome<&'a str> {
    if ptr.is_null() {
        return Err(Failure(format!("{what} is NULL")));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str()
        .map_err(|e| Failure(format!("{what} is not valid UTF-8: {e}")))
}

/// An optional C string: NULL is empty.
///
/// # Safety
/// As [`text`].
unsafe fn optional_text<'a>(ptr: *const c_char, what: &str) -> Outcome<&'a str> {
    if ptr.is_null() {
        Ok("")
    } else {
        // SAFETY: forwarded contract.
        unsafe { text(ptr, what) }
    }
}

/// # Safety
/// `p` is NULL or a live handle from `gala_probe_connect`.
unsafe fn handle<'a>(p: *const ProbeHandle) -> Outcome<&'a ProbeHandle> {
    // SAFETY: by the caller's contract.
    unsafe { p.as_ref() }.ok_or_else(|| Failure("probe is NULL".to_owned()))
}

/// # Safety
/// `p` is NULL or a live handle from `gala_probe_connect`, used by no other thread.
unsafe fn handle_mut<'a>(p: *mut ProbeHandle) -> Outcome<&'a mut ProbeHandle> {
    // SAFETY: by the caller's contract.
    unsafe { p.as_mut() }.ok_or_else(|| Failure("probe is NULL".to_owned()))
}

/// Connects the probe (see the header).
///
/// # Safety
/// `meta_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn gala_probe_connect(meta_path: *const c_char) -> *mut ProbeHandle {
    entry(std::ptr::null_mut(), || {
        let mut builder = Probe::builder().sdk_version(C_SDK_VERSION);
        if !meta_path.is_null() {
            // SAFETY: non-NULL, NUL-terminated by the contract.
            builder = builder.meta_file(unsafe { text(meta_path, "meta_path") }?);
        }
        let probe = builder.connect()?;
        Ok(Box::into_raw(Box::new(ProbeHandle { probe })))
    })
}

/// The reason of the last failing call on this thread.
#[no_mangle]
pub extern "C" fn gala_probe_last_error() -> *const c_char {
    static NONE: &CStr = c"";
    // The CString lives in the thread-local until the next failure replaces it.
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(NONE.as_ptr())
}

/// Flushes and waits for a timeout, a new configuration or a stop.
///
/// # Safety
/// `p` is NULL or a live handle, used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn gala_probe_wait(p: *mut ProbeHandle, timeout_ms: c_uint) -> c_int {
    entry(GALA_WAKE_STOP, || {
        // SAFETY: by the contract.
        let h = unsafe { handle_mut(p) }?;
        Ok(
            match h.probe.wait(Duration::from_millis(timeout_ms.into())) {
                Wake::Timeout => GALA_WAKE_TIMEOUT,
                Wake::Config => GALA_WAKE_CONFIG,
                Wake::Stop => GALA_WAKE_STOP,
            },
        )
    })
}

/// 1 until a stop was requested.
///
/// # Safety
/// `p` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn gala_probe_running(p: *const ProbeHandle) -> c_int {
    entry(0, || {
        // SAFETY: by the contract.
        Ok(c_int::from(unsafe { handle(p) }?.probe.running()))
    })
}

/// One configuration value as text, with `snprintf` semantics.
///
/// # Safety
/// `p` is NULL or a live handle; `path` is NULL or NUL-terminated; `buf` is NULL or has room
/// for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn gala_probe_get(
    p: *const ProbeHandle,
    path: *const c_char,
    buf: *mut c_char,
    len: usize,
) -> c_long {
    entry(-1, || {
        // SAFETY: by the contract.
        let (h, path) = unsafe { (handle(p)?, text(path, "path")?) };
        if buf.is_null() && len > 0 {
            return Err(Failure("buf is NULL but len is not 0".to_owned()));
        }
        let value = h.probe.config().get(path)?;
        let full = c_long::try_from(value.len())?;
        if len > 0 {
            let n = value.len().min(len - 1);
            // SAFETY: `buf` has room for `len` > `n` bytes and does not overlap `value`,
            // which this function owns.
            unsafe {
                std::ptr::copy_nonoverlapping(value.as_ptr(), buf.cast::<u8>(), n);
                *buf.add(n) = 0;
            }
        }
        Ok(full)
    })
}

/// One numeric configuration value.
///
/// # Safety
/// `p` is NULL or a live handle; `path` is NULL or NUL-terminated; `out` is NULL or points
/// to a writable `uint64_t`.
#[no_mangle]
pub unsafe extern "C" fn gala_probe_get_u64(
    p: *const ProbeHandle,
    path: *const c_char,
    out: *mut u64,
) -> c_int {
    entry(-1, || {
        // SAFETY: by the contract.
        let (h, path) = unsafe { (handle(p)?, text(path, "path")?) };
        if out.is_null() {
            return Err(Failure("out is NULL".to_owned()));
        }
        let value = h.probe.config().get(path)?;
        let number = match value.as_str() {
            "true" => 1,
            "false" => 0,
            v => v
                .parse::<u64>()
                .map_err(|_| Failure(format!("{path} is not a number: {v:?}")))?,
        };
        // SAFETY: non-NULL and writable by the contract.
        unsafe { out.write(number) };
        Ok(0)
    })
}

/// Whether a sub-item is enabled.
///
/// # Safety
/// `p` is NULL or a live handle; `name` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn gala_probe_has_subitem(
    p: *const ProbeHandle,
    name: *const c_char,
) -> c_int {
    entry(0, || {
        // SAFETY: by the contract.
        let (h, name) = unsafe { (handle(p)?, text(name, "name")?) };
        Ok(c_int::from(h.probe.config().has_subitem(name)))
    })
}

/// The snooped pids; returns their total count.
///
/// # Safety
/// `p` is NULL or a live handle; `out` is NULL or has room for `cap` values.
#[no_mangle]
pub unsafe extern "C" fn gala_probe_pids(
    p: *const ProbeHandle,
    out: *mut u32,
    cap: usize,
) -> usize {
    entry(0, || {
        // SAFETY: by the contract.
        let h = unsafe { handle(p) }?;
        if out.is_null() && cap > 0 {
            return Err(Failure("out is NULL but cap is not 0".to_owned()));
        }
        let pids = h.probe.config().pids();
        let n = pids.len().min(cap);
        if n > 0 {
            // SAFETY: `out` has room for `cap` >= `n` values and does not overlap `pids`.
            unsafe { std::ptr::copy_nonoverlapping(pids.as_ptr(), out, n) };
        }
        Ok(pids.len())
    })
}

/// Writes one record.
///
/// # Safety
/// `p` is NULL or a live handle, used by no other thread; `table` is NULL or NUL-terminated;
/// `values` is NULL or points to `n` pointers, each NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn gala_probe_emit(
    p: *mut ProbeHandle,
    table: *const c_char,
    n: usize,
    values: *const *const c_char,
) -> c_int {
    entry(-1, || {
        // SAFETY: by the contract.
        let (h, table) = unsafe { (handle_mut(p)?, text(table, "table")?) };
        let raw: &[*const c_char] = if n == 0 {
            &[]
        } else if values.is_null() {
            return Err(Failure("values is NULL".to_owned()));
        } else {
            // SAFETY: `values` points to `n` pointers by the contract.
            unsafe { std::slice::from_raw_parts(values, n) }
        };
        let texts = raw
            .iter()
            .enumerate()
            // SAFETY: each pointer is NULL or NUL-terminated by the contract.
            .map(|(i, &v)| unsafe { text(v, &format!("value {} of {table:?}", i + 1)) })
            .collect::<Outcome<Vec<&str>>>()?;
        h.probe.emit_iter(table, &texts)?;
        Ok(0)
    })
}

/// Writes one event.
///
/// # Safety
/// `p` is NULL or a live handle, used by no other thread; `ev` is NULL or points to a
/// `struct gala_event` of `size` readable bytes whose strings are each NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn gala_probe_event(p: *mut ProbeHandle, ev: *const GalaEvent) -> c_int {
    entry(-1, || {
        // SAFETY: by the contract.
        let h = unsafe { handle_mut(p) }?;
        // SAFETY: by the contract.
        let ev = unsafe { ev.as_ref() }.ok_or_else(|| Failure("event is NULL".to_owned()))?;
        // SAFETY: the caller's struct is `ev.size` bytes long by the contract.
        unsafe { check_event_size(ev) }?;
        let severity = match ev.severity {
            GALA_SEV_INFO => Severity::Info,
            GALA_SEV_WARN => Severity::Warn,
            GALA_SEV_ERROR => Severity::Error,
            GALA_SEV_FATAL => Severity::Fatal,
            other => {
                return Err(Failure(format!(
                    "event: severity {other} is not one of GALA_SEV_INFO/WARN/ERROR/FATAL"
                )))
            }
        };
        // SAFETY: each string is NULL or NUL-terminated by the contract. The required
        // fields may be NULL here: an empty one is refused by `Event::render`.
        let event = unsafe {
            Event::new(
                optional_text(ev.entity_name, "event entity_name")?,
                optional_text(ev.entity_id, "event entity_id")?,
                optional_text(ev.metric, "event metric")?,
                severity,
                optional_text(ev.message, "event message")?,
            )
            .pid(ev.pid)
            .comm(optional_text(ev.comm, "event comm")?)
            .ip(optional_text(ev.ip, "event ip")?)
            .container_id(optional_text(ev.container_id, "event container_id")?)
            .pod_id(optional_text(ev.pod_id, "event pod_id")?)
            .device(optional_text(ev.device, "event device")?)
        };
        h.probe.event(&event)?;
        Ok(0)
    })
}

/// Checks `struct gala_event`'s `size`: at least this version's, and any bytes past it (fields
/// of a newer header) zero.
///
/// # Safety
/// `ev` points to `ev.size` readable bytes.
unsafe fn check_event_size(ev: &GalaEvent) -> Outcome<()> {
    let known = std::mem::size_of::<GalaEvent>();
    let size = ev.size as usize;
    if size < known {
        return Err(Failure(format!(
            "event: size {size} is smaller than struct gala_event ({known} bytes): set .size = sizeof(struct gala_event) or use GALA_EVENT_INIT"
        )));
    }
    // SAFETY: the caller's struct is `size` bytes long.
    let newer = unsafe {
        std::slice::from_raw_parts(std::ptr::from_ref(ev).cast::<u8>().add(known), size - known)
    };
    if newer.iter().any(|&b| b != 0) {
        return Err(Failure(format!(
            "event: fields past byte {known} are set; this library knows struct gala_event of {known} bytes: link a newer libgala_probe"
        )));
    }
    Ok(())
}

/// Sends a status report.
///
/// # Safety
/// `p` is NULL or a live handle, used by no other thread; `text` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn gala_probe_status(p: *mut ProbeHandle, level: c_int, text: *const c_char) {
    entry((), || {
        // SAFETY: by the contract.
        let (h, text) = unsafe { (handle_mut(p)?, optional_text(text, "text")?) };
        let level = match level {
            GALA_LEVEL_INFO => Level::Info,
            GALA_LEVEL_WARN => Level::Warn,
            GALA_LEVEL_ERROR => Level::Error,
            other => {
                return Err(Failure(format!(
                    "status: level {other} is not one of GALA_LEVEL_INFO/WARN/ERROR"
                )))
            }
        };
        h.probe.status(level, text);
        Ok(())
    })
}

/// Writes buffered output now.
///
/// # Safety
/// `p` is NULL or a live handle, used by no other thread.
#[no_mangle]
pub unsafe extern "C" fn gala_probe_flush(p: *mut ProbeHandle) -> c_int {
    entry(-1, || {
        // SAFETY: by the contract.
        unsafe { handle_mut(p) }?.probe.flush()?;
        Ok(0)
    })
}

/// Flushes, ends the connection and frees the handle.
///
/// # Safety
/// `p` is NULL or a live handle from `gala_probe_connect`, not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn gala_probe_close(p: *mut ProbeHandle) {
    entry((), || {
        if !p.is_null() {
            // SAFETY: `p` came from `Box::into_raw` in `gala_probe_connect` and is given up
            // by the caller. Dropping the probe flushes its output.
            drop(unsafe { Box::from_raw(p) });
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests;
