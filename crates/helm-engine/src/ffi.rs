//! libhelm_c: Helm compiled as a C shared library (header `helm_c.h` of helm-c-sdk, mirrored in
//! helm-python-sdk's `_native.py`). Every call returns an int32 status, 0 on success; every returned
//! string, error strings included, is freed with `helm_free_string`.

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;
use std::sync::Mutex;

use crate::options::{LintMessage, LintOptions, LintReport, RenderOptions, RenderOptionsJson, Severity};
use crate::Error;

const STATUS_CHART_LOAD: i32 = -20;
const STATUS_VALUES: i32 = -22;
const STATUS_RENDER: i32 = -23;

type FreeString = unsafe extern "C" fn(*mut c_char);
type OpenHandles = unsafe extern "C" fn() -> i64;
type ChartLoad = unsafe extern "C" fn(*const c_char, *mut u64, *mut *mut c_char) -> i32;
type ChartFree = unsafe extern "C" fn(u64, *mut *mut c_char) -> i32;
type Render = unsafe extern "C" fn(u64, *const c_char, *const c_char, *mut *mut c_char, *mut *mut c_char) -> i32;
type LintRunOpts =
    unsafe extern "C" fn(*const c_char, *const c_char, *const c_char, *mut *mut c_char, *mut *mut c_char) -> i32;
type ConfigNew = unsafe extern "C" fn(*const c_char, *mut u64, *mut *mut c_char) -> i32;
type ConfigFree = unsafe extern "C" fn(u64, *mut *mut c_char) -> i32;
/// helm_install and helm_upgrade: config, context, chart handle, chart reference, release name, values JSON,
/// options JSON, out, err.
type Release = unsafe extern "C" fn(
    u64,
    u64,
    u64,
    *const c_char,
    *const c_char,
    *const c_char,
    *const c_char,
    *mut *mut c_char,
    *mut *mut c_char,
) -> i32;
/// helm_uninstall, helm_test_run, helm_history: config, release name, options JSON, out, err.
type NamedAction = unsafe extern "C" fn(u64, *const c_char, *const c_char, *mut *mut c_char, *mut *mut c_char) -> i32;
/// helm_rollback: config, release name, options JSON, err.
type Rollback = unsafe extern "C" fn(u64, *const c_char, *const c_char, *mut *mut c_char) -> i32;

/// The loaded library. It holds a Go runtime, which cannot be unloaded: it lives for the process.
#[derive(Debug)]
pub(crate) struct Library {
    path: PathBuf,
    free_string: FreeString,
    open_handles: OpenHandles,
    chart_load: ChartLoad,
    chart_free: ChartFree,
    render: Render,
    lint_run_opts: LintRunOpts,
    config_new: ConfigNew,
    config_free: ConfigFree,
    install: Release,
    upgrade: Release,
    uninstall: NamedAction,
    test_run: NamedAction,
    history: NamedAction,
    rollback: Rollback,
    _library: libloading::Library,
}

/// The release actions that take a release name and options.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NamedCall {
    Uninstall,
    Test,
    History,
}

static LOADED: Mutex<Option<&'static Library>> = Mutex::new(None);

impl Library {
    /// Loads the library once per process; later calls return the same one whatever the path.
    pub(crate) fn load(path: &Path) -> Result<&'static Library, Error> {
        let mut loaded = LOADED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(lib) = *loaded {
            return Ok(lib);
        }
        let wrap = |source| Error::Library { path: path.to_owned(), source };
        // SAFETY: loading runs the library's initialisers (the Go runtime); it is the documented use.
        let library = unsafe { libloading::Library::new(path) }.map_err(wrap)?;
        // SAFETY: the signatures are those of helm_c.h; the pointers stay valid because the library
        // is leaked below and never unloaded.
        let lib = unsafe {
            Library {
                path: path.to_owned(),
                free_string: *library.get::<FreeString>(b"helm_free_string\0").map_err(wrap)?,
                open_handles: *library.get::<OpenHandles>(b"helm_open_handles_count\0").map_err(wrap)?,
                chart_load: *library.get::<ChartLoad>(b"helm_chart_load\0").map_err(wrap)?,
                chart_free: *library.get::<ChartFree>(b"helm_chart_free\0").map_err(wrap)?,
                render: *library.get::<Render>(b"helm_render\0").map_err(wrap)?,
                lint_run_opts: *library.get::<LintRunOpts>(b"helm_lint_run_opts\0").map_err(wrap)?,
                config_new: *library.get::<ConfigNew>(b"helm_config_new\0").map_err(wrap)?,
                config_free: *library.get::<ConfigFree>(b"helm_config_free\0").map_err(wrap)?,
                install: *library.get::<Release>(b"helm_install\0").map_err(wrap)?,
                upgrade: *library.get::<Release>(b"helm_upgrade\0").map_err(wrap)?,
                uninstall: *library.get::<NamedAction>(b"helm_uninstall\0").map_err(wrap)?,
                test_run: *library.get::<NamedAction>(b"helm_test_run\0").map_err(wrap)?,
                history: *library.get::<NamedAction>(b"helm_history\0").map_err(wrap)?,
                rollback: *library.get::<Rollback>(b"helm_rollback\0").map_err(wrap)?,
                _library: library,
            }
        };
        let lib: &'static Library = Box::leak(Box::new(lib));
        *loaded = Some(lib);
        Ok(lib)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn open_handles(&self) -> i64 {
        // SAFETY: no arguments, returns a plain integer.
        unsafe { (self.open_handles)() }
    }

    pub(crate) fn render(
        &self,
        chart_dir: &Path,
        values: &serde_json::Value,
        options: &RenderOptions,
    ) -> Result<BTreeMap<String, String>, Error> {
        let chart = Chart::load(self, chart_dir)?;
        let values = json_cstring(values, "values")?;
        let opts = json_cstring(&RenderOptionsJson::from(options), "render options")?;
        let mut out = ptr::null_mut();
        let mut err = ptr::null_mut();
        // SAFETY: valid handle, NUL-terminated inputs borrowed for the call, out-pointers to fill.
        let status = unsafe { (self.render)(chart.handle, values.as_ptr(), opts.as_ptr(), &mut out, &mut err) };
        let out = self.take(out);
        let err = self.take(err);
        if status != 0 {
            return Err(status_error("helm_render", status, err));
        }
        serde_json::from_str(&out)
            .map_err(|e| Error::Parse { what: "helm_render output".into(), message: e.to_string() })
    }

    pub(crate) fn lint(
        &self,
        chart_dir: &Path,
        values: &serde_json::Value,
        options: &LintOptions,
    ) -> Result<LintReport, Error> {
        let path = path_cstring(chart_dir)?;
        let values = json_cstring(values, "values")?;
        let opts = json_cstring(options, "lint options")?;
        let mut out = ptr::null_mut();
        let mut err = ptr::null_mut();
        // SAFETY: NUL-terminated inputs borrowed for the call, out-pointers to fill.
        let status = unsafe { (self.lint_run_opts)(path.as_ptr(), values.as_ptr(), opts.as_ptr(), &mut out, &mut err) };
        let out = self.take(out);
        let err = self.take(err);
        if status != 0 {
            return Err(status_error("helm_lint_run_opts", status, err));
        }
        parse_lint(&out)
    }

    /// A connection to a cluster (`helm_config_new`): `options` as helm-c's JSON (kubeconfig_path, namespace...).
    pub(crate) fn config(&self, options: &serde_json::Value) -> Result<u64, Error> {
        let opts = json_cstring(options, "cluster options")?;
        let mut handle = 0u64;
        let mut err = ptr::null_mut();
        // SAFETY: NUL-terminated input borrowed for the call, out-pointers to fill.
        let status = unsafe { (self.config_new)(opts.as_ptr(), &mut handle, &mut err) };
        let err = self.take(err);
        if status != 0 || handle == 0 {
            return Err(status_error("helm_config_new", status, err));
        }
        Ok(handle)
    }

    pub(crate) fn config_free(&self, handle: u64) {
        let mut err = ptr::null_mut();
        // SAFETY: the handle came from helm_config_new and is freed once.
        unsafe { (self.config_free)(handle, &mut err) };
        self.take(err);
    }

    /// `helm install` (`upgrade` false) or `helm upgrade` of the chart in `chart_dir`; the release as JSON.
    pub(crate) fn release(
        &self,
        config: u64,
        upgrade: bool,
        chart_dir: &Path,
        name: &str,
        values: &serde_json::Value,
        options: &serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        let (call, function) = if upgrade { ("helm_upgrade", self.upgrade) } else { ("helm_install", self.install) };
        let chart = path_cstring(chart_dir)?;
        let name =
            CString::new(name).map_err(|e| Error::Parse { what: "release name".into(), message: e.to_string() })?;
        let values = json_cstring(values, "values")?;
        let opts = json_cstring(options, "release options")?;
        let mut out = ptr::null_mut();
        let mut err = ptr::null_mut();
        // SAFETY: a live config handle, no context or chart handle (0: the chart is read from the path),
        // NUL-terminated inputs borrowed for the call, out-pointers to fill.
        let status = unsafe {
            function(config, 0, 0, chart.as_ptr(), name.as_ptr(), values.as_ptr(), opts.as_ptr(), &mut out, &mut err)
        };
        let out = self.take(out);
        let err = self.take(err);
        if status != 0 {
            return Err(status_error(call, status, err));
        }
        serde_json::from_str(&out).map_err(|e| Error::Parse { what: format!("{call} output"), message: e.to_string() })
    }

    /// `helm uninstall`, `helm test`, `helm history`: what the call printed.
    pub(crate) fn named(
        &self,
        action: NamedCall,
        config: u64,
        name: &str,
        options: &serde_json::Value,
    ) -> Result<String, Error> {
        let (call, function) = match action {
            NamedCall::Uninstall => ("helm_uninstall", self.uninstall),
            NamedCall::Test => ("helm_test_run", self.test_run),
            NamedCall::History => ("helm_history", self.history),
        };
        let name =
            CString::new(name).map_err(|e| Error::Parse { what: "release name".into(), message: e.to_string() })?;
        let opts = json_cstring(options, "release options")?;
        let mut out = ptr::null_mut();
        let mut err = ptr::null_mut();
        // SAFETY: a live config handle, NUL-terminated inputs borrowed for the call, out-pointers to fill.
        let status = unsafe { function(config, name.as_ptr(), opts.as_ptr(), &mut out, &mut err) };
        let out = self.take(out);
        let err = self.take(err);
        if status != 0 {
            return Err(status_error(call, status, err));
        }
        Ok(out)
    }

    /// `helm rollback`.
    pub(crate) fn rollback(&self, config: u64, name: &str, options: &serde_json::Value) -> Result<(), Error> {
        let name =
            CString::new(name).map_err(|e| Error::Parse { what: "release name".into(), message: e.to_string() })?;
        let opts = json_cstring(options, "rollback options")?;
        let mut err = ptr::null_mut();
        // SAFETY: a live config handle, NUL-terminated inputs borrowed for the call, an out-pointer to fill.
        let status = unsafe { (self.rollback)(config, name.as_ptr(), opts.as_ptr(), &mut err) };
        let err = self.take(err);
        if status != 0 {
            return Err(status_error("helm_rollback", status, err));
        }
        Ok(())
    }

    /// Copies a string returned by the library and frees it.
    fn take(&self, s: *mut c_char) -> String {
        if s.is_null() {
            return String::new();
        }
        // SAFETY: the library returned a NUL-terminated string that we own until freed.
        let text = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
        // SAFETY: freed exactly once, with the library's own allocator.
        unsafe { (self.free_string)(s) };
        text
    }
}

/// A loaded chart, freed on drop.
struct Chart<'a> {
    lib: &'a Library,
    handle: u64,
}

impl<'a> Chart<'a> {
    fn load(lib: &'a Library, dir: &Path) -> Result<Chart<'a>, Error> {
        let path = path_cstring(dir)?;
        let mut handle = 0u64;
        let mut err = ptr::null_mut();
        // SAFETY: NUL-terminated path borrowed for the call, out-pointers to fill.
        let status = unsafe { (lib.chart_load)(path.as_ptr(), &mut handle, &mut err) };
        let err = lib.take(err);
        if status != 0 || handle == 0 {
            return Err(Error::ChartLoad { path: dir.to_owned(), message: format!("status {status}: {err}") });
        }
        Ok(Chart { lib, handle })
    }
}

impl Drop for Chart<'_> {
    fn drop(&mut self) {
        let mut err = ptr::null_mut();
        // SAFETY: the handle came from helm_chart_load and is freed once.
        unsafe { (self.lib.chart_free)(self.handle, &mut err) };
        self.lib.take(err);
    }
}

fn status_error(call: &'static str, status: i32, message: String) -> Error {
    match status {
        STATUS_VALUES => Error::Values { message },
        STATUS_RENDER => Error::Render { message },
        STATUS_CHART_LOAD => Error::ChartLoad { path: PathBuf::new(), message },
        _ => Error::Call { call, status, message },
    }
}

fn json_cstring<T: serde::Serialize + ?Sized>(value: &T, what: &str) -> Result<CString, Error> {
    let text = serde_json::to_string(value).map_err(|e| Error::Parse { what: what.into(), message: e.to_string() })?;
    CString::new(text).map_err(|e| Error::Parse { what: what.into(), message: e.to_string() })
}

fn path_cstring(path: &Path) -> Result<CString, Error> {
    CString::new(path.to_string_lossy().into_owned())
        .map_err(|e| Error::Parse { what: format!("path {}", path.display()), message: e.to_string() })
}

#[derive(serde::Deserialize)]
struct LintJson {
    #[serde(default)]
    messages: Vec<LintMessageJson>,
}

#[derive(serde::Deserialize)]
struct LintMessageJson {
    severity: i64,
    #[serde(default)]
    path: String,
    #[serde(default)]
    error: String,
}

fn parse_lint(text: &str) -> Result<LintReport, Error> {
    let report: LintJson =
        serde_json::from_str(text).map_err(|e| Error::Parse { what: "lint report".into(), message: e.to_string() })?;
    Ok(LintReport {
        messages: report
            .messages
            .into_iter()
            .map(|m| LintMessage { severity: Severity::from_helm(m.severity), path: m.path, text: m.error })
            .collect(),
    })
}
