//! NVRTC, loaded deliberately and reported: which library, which version, and code for the
//! device's own architecture.
//!
//! Why not cudarc's NVRTC wrapper: it opens whichever `libnvrtc` comes first among many names and
//! only returns PTX. PTX from a newer NVRTC than the driver (12.9's ISA 8.8 on an R535–R570
//! driver, common on H100/H200 fleets) does not load. A cubin (SASS for `sm_XX`) from the same
//! major version does, under CUDA's minor-version compatibility, so the device path compiles
//! cubins and keeps PTX only as a fallback (see `device.rs`).
//!
//! Choice of library: `SLUICE_NVRTC` (a path) if set, else the versioned sonames this build
//! knows, newest major first but never newer than the driver's major (a cubin from a newer major
//! needs a newer driver); without a driver (compile checks) 12 before 13. Never the unversioned
//! `libnvrtc.so`, whose version nobody chose.

use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Arc, Mutex, OnceLock};

type Program = *mut c_void;
type Status = c_int;

/// NVRTC majors whose C API (the few calls below) this build uses.
const MAJORS: [u32; 2] = [12, 13];

/// An opened NVRTC library.
pub struct Nvrtc {
    lib: libloading::Library,
    /// What was opened (a soname or the `SLUICE_NVRTC` path) and the file it resolved to.
    name: String,
    file: Option<String>,
    version: (i32, i32),
}

/// What NVRTC produced for one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    /// SASS for a real architecture (`sm_XX`): loads on any driver of the same major version.
    Cubin(Vec<u8>),
    /// PTX for a virtual architecture (`compute_XX`): the driver JIT-compiles it.
    Ptx(String),
}

/// Library names to try, in order: the `SLUICE_NVRTC` override alone, else versioned sonames,
/// newest major first but none newer than `driver_major` (when a driver is present).
pub fn candidates(override_path: Option<&str>, driver_major: Option<u32>) -> Vec<String> {
    if let Some(path) = override_path {
        return vec![path.to_string()];
    }
    let mut majors: Vec<u32> = match driver_major {
        Some(d) => MAJORS.iter().copied().filter(|&m| m <= d).rev().collect(),
        None => MAJORS.to_vec(),
    };
    if majors.is_empty() {
        // A driver older than every major we know: try the oldest, its error will say why.
        majors.push(MAJORS[0]);
    }
    majors
        .into_iter()
        .map(|m| format!("libnvrtc.so.{m}"))
        .collect()
}

/// The CUDA driver's major version, if a driver library loads.
pub fn driver_major() -> Option<u32> {
    // SAFETY: only checks whether the shared library can be opened.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return None;
    }
    let mut v: c_int = 0;
    // SAFETY: the library is present; cuDriverGetVersion needs no cuInit and writes one int.
    let ok = unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) };
    (ok == cudarc::driver::sys::cudaError_enum::CUDA_SUCCESS && v > 0).then_some(v as u32 / 1000)
}

/// The process's NVRTC, opened once; the error says what was tried.
pub fn get() -> Result<&'static Nvrtc, String> {
    static NVRTC: OnceLock<Result<Nvrtc, String>> = OnceLock::new();
    NVRTC
        .get_or_init(|| {
            let override_path = std::env::var("SLUICE_NVRTC").ok();
            let names = candidates(override_path.as_deref(), driver_major());
            let mut why = Vec::new();
            for name in &names {
                match Nvrtc::open(name) {
                    Ok(n) => return Ok(n),
                    Err(e) => why.push(e),
                }
            }
            Err(format!(
                "no NVRTC library ({}; install the nvidia-cuda-nvrtc-cu12 wheel and put its lib/ \
                 on LD_LIBRARY_PATH, or set SLUICE_NVRTC to a libnvrtc.so.12)",
                why.join("; ")
            ))
        })
        .as_ref()
        .map_err(Clone::clone)
}

impl Nvrtc {
    fn open(name: &str) -> Result<Nvrtc, String> {
        // SAFETY: NVRTC's initializers have no preconditions.
        let lib = unsafe { libloading::Library::new(name) }.map_err(|e| format!("{name}: {e}"))?;
        let mut n = Nvrtc {
            lib,
            name: name.to_string(),
            file: None,
            version: (0, 0),
        };
        let (mut major, mut minor) = (0, 0);
        // SAFETY: nvrtcVersion(int*, int*) writes two ints.
        let version: unsafe extern "C" fn(*mut c_int, *mut c_int) -> Status =
            *n.symbol(b"nvrtcVersion\0")?;
        n.check(unsafe { version(&mut major, &mut minor) }, "nvrtcVersion")?;
        if !MAJORS.contains(&(major as u32)) {
            return Err(format!(
                "{name} is NVRTC {major}.{minor}; this build knows {MAJORS:?}"
            ));
        }
        let file = n.resolved_file(version as *const c_void);
        n.version = (major, minor);
        n.file = file;
        Ok(n)
    }

    /// The file a symbol of the library lives in (dladdr), for the report.
    fn resolved_file(&self, symbol: *const c_void) -> Option<String> {
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: `symbol` is an address inside the loaded library; dladdr only reads it.
        if unsafe { libc::dladdr(symbol, &mut info) } == 0 || info.dli_fname.is_null() {
            return None;
        }
        // SAFETY: dladdr returned a NUL-terminated path that lives as long as the library.
        Some(
            unsafe { CStr::from_ptr(info.dli_fname) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    fn symbol<T>(&self, name: &[u8]) -> Result<libloading::Symbol<'_, T>, String> {
        // SAFETY: every caller names the C signature NVRTC documents for `name`.
        unsafe { self.lib.get(name) }.map_err(|e| {
            let shown = String::from_utf8_lossy(&name[..name.len() - 1]).into_owned();
            format!("{}: no {shown}: {e}", self.name)
        })
    }

    fn check(&self, status: Status, call: &str) -> Result<(), String> {
        if status == 0 {
            return Ok(());
        }
        let text = self
            .symbol::<unsafe extern "C" fn(Status) -> *const c_char>(b"nvrtcGetErrorString\0")
            .ok()
            // SAFETY: returns a static NUL-terminated string for any status.
            .map(|f| {
                unsafe { CStr::from_ptr(f(status)) }
                    .to_string_lossy()
                    .into_owned()
            })
            .unwrap_or_else(|| format!("status {status}"));
        Err(format!("{call}: {text}"))
    }

    /// (major, minor).
    pub fn version(&self) -> (i32, i32) {
        self.version
    }

    /// "NVRTC 12.9 (libnvrtc.so.12 → /path/libnvrtc.so.12)".
    pub fn describe(&self) -> String {
        let (major, minor) = self.version;
        match &self.file {
            Some(f) if *f != self.name => format!("NVRTC {major}.{minor} ({} → {f})", self.name),
            _ => format!("NVRTC {major}.{minor} ({})", self.name),
        }
    }

    /// The real architectures (`sm_XX` numbers, e.g. 90) this NVRTC can compile cubins for.
    pub fn supported_archs(&self) -> Result<Vec<u32>, String> {
        let count: libloading::Symbol<unsafe extern "C" fn(*mut c_int) -> Status> =
            self.symbol(b"nvrtcGetNumSupportedArchs\0")?;
        let list: libloading::Symbol<unsafe extern "C" fn(*mut c_int) -> Status> =
            self.symbol(b"nvrtcGetSupportedArchs\0")?;
        let mut n = 0;
        // SAFETY: writes one int.
        self.check(unsafe { count(&mut n) }, "nvrtcGetNumSupportedArchs")?;
        let mut archs = vec![0 as c_int; n.max(0) as usize];
        // SAFETY: `archs` has room for the `n` ints it writes.
        self.check(
            unsafe { list(archs.as_mut_ptr()) },
            "nvrtcGetSupportedArchs",
        )?;
        Ok(archs.into_iter().map(|a| a as u32).collect())
    }

    /// Compile `src` for `arch`: a cubin for `sm_XX`, PTX for `compute_XX`. Multiply-adds are
    /// not contracted, so results match the CPU's arithmetic. A failed compile returns NVRTC's
    /// log as text.
    pub fn compile(&self, name: &str, src: &str, arch: &str) -> Result<Image, String> {
        type Create = unsafe extern "C" fn(
            *mut Program,
            *const c_char,
            *const c_char,
            c_int,
            *const *const c_char,
            *const *const c_char,
        ) -> Status;
        type Compile = unsafe extern "C" fn(Program, c_int, *const *const c_char) -> Status;
        type Size = unsafe extern "C" fn(Program, *mut usize) -> Status;
        type Get = unsafe extern "C" fn(Program, *mut c_char) -> Status;
        type Destroy = unsafe extern "C" fn(*mut Program) -> Status;
        let create: libloading::Symbol<Create> = self.symbol(b"nvrtcCreateProgram\0")?;
        let compile: libloading::Symbol<Compile> = self.symbol(b"nvrtcCompileProgram\0")?;
        let destroy: libloading::Symbol<Destroy> = self.symbol(b"nvrtcDestroyProgram\0")?;
        let cubin = arch.starts_with("sm_");
        let (size, get): (libloading::Symbol<Size>, libloading::Symbol<Get>) = if cubin {
            (
                self.symbol(b"nvrtcGetCUBINSize\0")?,
                self.symbol(b"nvrtcGetCUBIN\0")?,
            )
        } else {
            (
                self.symbol(b"nvrtcGetPTXSize\0")?,
                self.symbol(b"nvrtcGetPTX\0")?,
            )
        };
        let c_src = CString::new(src).map_err(|_| format!("{name}: NUL in the source"))?;
        let c_name = CString::new(name).map_err(|_| format!("{name}: NUL in the name"))?;
        let options: Vec<CString> = [
            format!("--gpu-architecture={arch}"),
            "--fmad=false".to_string(),
        ]
        .into_iter()
        .map(|o| CString::new(o).expect("no NUL"))
        .collect();
        let option_ptrs: Vec<*const c_char> = options.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Program = std::ptr::null_mut();
        // SAFETY: the strings outlive the call; no headers.
        let status = unsafe {
            create(
                &mut prog,
                c_src.as_ptr(),
                c_name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        self.check(status, "nvrtcCreateProgram")?;
        let result = (|| {
            // SAFETY: `prog` is live; the option strings outlive the call.
            let status = unsafe { compile(prog, option_ptrs.len() as c_int, option_ptrs.as_ptr()) };
            if status != 0 {
                let log = self.log(prog).unwrap_or_default();
                return Err(format!(
                    "{}: {name} for {arch}: {}\n{}",
                    self.describe(),
                    self.check(status, "nvrtcCompileProgram").unwrap_err(),
                    log.trim_end()
                ));
            }
            let mut n = 0usize;
            // SAFETY: `prog` compiled; writes one size.
            self.check(unsafe { size(prog, &mut n) }, "getting the output size")?;
            let mut out = vec![0u8; n];
            // SAFETY: `out` has the `n` bytes NVRTC said it writes.
            self.check(
                unsafe { get(prog, out.as_mut_ptr().cast()) },
                "getting the output",
            )?;
            Ok(if cubin {
                Image::Cubin(out)
            } else {
                // The size counts the terminating NUL; the loader adds its own.
                let text = String::from_utf8(out).map_err(|_| "PTX is not UTF-8".to_string())?;
                Image::Ptx(text.trim_end_matches('\0').to_string())
            })
        })();
        // SAFETY: `prog` was created above and is destroyed once.
        unsafe { destroy(&mut prog) };
        result
    }

    /// The program's compile log as text.
    fn log(&self, prog: Program) -> Result<String, String> {
        let size: libloading::Symbol<unsafe extern "C" fn(Program, *mut usize) -> Status> =
            self.symbol(b"nvrtcGetProgramLogSize\0")?;
        let get: libloading::Symbol<unsafe extern "C" fn(Program, *mut c_char) -> Status> =
            self.symbol(b"nvrtcGetProgramLog\0")?;
        let mut n = 0usize;
        // SAFETY: writes one size.
        self.check(unsafe { size(prog, &mut n) }, "nvrtcGetProgramLogSize")?;
        let mut log = vec![0u8; n.max(1)];
        // SAFETY: `log` has room for the `n` bytes.
        self.check(
            unsafe { get(prog, log.as_mut_ptr().cast()) },
            "nvrtcGetProgramLog",
        )?;
        Ok(String::from_utf8_lossy(&log)
            .trim_end_matches('\0')
            .to_string())
    }
}

type ImageCache = Mutex<HashMap<(u64, String), Arc<Image>>>;

/// [`Nvrtc::compile`] on the process's NVRTC, once per (source hash, arch).
pub fn compile_cached(name: &str, src: &str, arch: &str) -> Result<Arc<Image>, String> {
    let nvrtc = get()?;
    static CACHE: OnceLock<ImageCache> = OnceLock::new();
    let key = (
        twox_hash::XxHash3_64::oneshot(src.as_bytes()),
        arch.to_string(),
    );
    let cache = CACHE.get_or_init(Default::default);
    if let Some(image) = cache.lock().unwrap().get(&key) {
        return Ok(image.clone());
    }
    let image = Arc::new(nvrtc.compile(name, src, arch)?);
    cache.lock().unwrap().insert(key, image.clone());
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::candidates;

    #[test]
    fn the_library_is_chosen_by_version_never_by_path_order() {
        // The override is taken alone: no silent fallback to another library.
        assert_eq!(
            candidates(Some("/opt/x/libnvrtc.so.12"), Some(12)),
            ["/opt/x/libnvrtc.so.12"]
        );
        // A 12.x driver cannot load a cubin from NVRTC 13.
        assert_eq!(candidates(None, Some(12)), ["libnvrtc.so.12"]);
        // A 13.x driver takes 13 first, then 12.
        assert_eq!(
            candidates(None, Some(13)),
            ["libnvrtc.so.13", "libnvrtc.so.12"]
        );
        // No driver (compile checks only): the API level this build targets first.
        assert_eq!(candidates(None, None), ["libnvrtc.so.12", "libnvrtc.so.13"]);
        assert!(candidates(None, Some(11))
            .iter()
            .all(|c| c.ends_with(".so.12")));
        assert!(!candidates(None, None).iter().any(|c| c.ends_with(".so")));
    }
}
