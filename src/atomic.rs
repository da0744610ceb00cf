//! Writing files so that nothing a user made is ever half-written: every checkpoint, picture and report goes through
//! `write_atomic`, and an output directory is proved writable (`prepare_dir`) before long work starts. In a browser
//! there are no files: what the engine writes goes to the page (`set_page_sink`).

use std::io;
use std::path::PathBuf;

#[cfg(not(target_arch = "wasm32"))]
pub use native::{prepare_dir, write_atomic};
#[cfg(target_arch = "wasm32")]
pub use page::{prepare_dir, set_page_sink, write_atomic, PageSink};

/// Which step of an atomic write failed, on which path.
#[derive(Debug)]
pub struct AtomicWriteError {
    /// e.g. "creating temp file", "renaming temp file onto".
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

mod native {
    #![cfg(not(target_arch = "wasm32"))]

    use std::fs;
    use std::io::{self, Write};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::AtomicWriteError;

    static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

    /// Removes the temp file unless disarmed (after a successful rename).
    struct TempGuard<'a> {
        path: &'a Path,
        armed: bool,
    }

    impl Drop for TempGuard<'_> {
        fn drop(&mut self) {
            if self.armed {
                let _ = fs::remove_file(self.path);
            }
        }
    }

    /// Writes `bytes` to `path` atomically: a new temp file in the same directory (`.<name>.tmp-<pid>-<n>`), write,
    /// fsync, rename over `path`, then fsync the directory (best effort). `path` is either its old content or all of
    /// the new; the temp file is removed on any error.
    pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
        let err = |op, p: &Path, source| AtomicWriteError { op, path: p.to_path_buf(), source };
        let file_name = path
            .file_name()
            .ok_or_else(|| err("saving", path, io::Error::new(io::ErrorKind::InvalidInput, "path has no file name")))?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{}.tmp-{}-{n}", file_name.to_string_lossy(), std::process::id()));

        let mut guard = TempGuard { path: &tmp, armed: false };
        {
            // Closed at the end of this block, before the rename.
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| err("creating temp file", &tmp, e))?;
            guard.armed = true;
            file.write_all(bytes).map_err(|e| err("writing temp file", &tmp, e))?;
            file.sync_all().map_err(|e| err("syncing temp file", &tmp, e))?;
        }
        fs::rename(&tmp, path).map_err(|e| err("renaming temp file onto", path, e))?;
        guard.armed = false;
        // Make the rename itself durable. Directories cannot be opened for syncing on every platform; best effort.
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Creates the directory `dir` if needed and proves it writable.
    pub fn prepare_dir(dir: &Path) -> Result<(), AtomicWriteError> {
        let err = |op, source| AtomicWriteError { op, path: dir.to_path_buf(), source };
        fs::create_dir_all(dir).map_err(|e| err("creating directory", e))?;
        let probe = dir.join(format!(".gpu-cnn-write-test-{}", std::process::id()));
        fs::write(&probe, b"ok").map_err(|e| err("writing into directory", e))?;
        let _ = fs::remove_file(&probe);
        Ok(())
    }
}

mod page {
    #![cfg(target_arch = "wasm32")]

    use std::path::Path;

    use super::AtomicWriteError;

    /// What takes a file in a browser: its path and whole content.
    pub type PageSink = Box<dyn FnMut(&Path, &[u8])>;

    thread_local! {
        static PAGE_SINK: std::cell::RefCell<Option<PageSink>> = const { std::cell::RefCell::new(None) };
    }

    /// Where what the engine writes (pictures, logs) goes: the page shows it; without a sink, nowhere.
    pub fn set_page_sink(sink: Option<PageSink>) {
        PAGE_SINK.with(|s| *s.borrow_mut() = sink);
    }

    /// Hands the file to the page (`set_page_sink`), whole.
    pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
        PAGE_SINK.with(|s| {
            if let Some(sink) = s.borrow_mut().as_mut() {
                sink(path, bytes);
            }
        });
        Ok(())
    }

    /// Nothing to prepare: the files go to the page.
    pub fn prepare_dir(_dir: &Path) -> Result<(), AtomicWriteError> {
        Ok(())
    }
}
