//! The one boundary between the lake writer and where files live. A file being written goes
//! to a [`Sink`]: a local temporary file, or memory for an object store. [`Store`] creates
//! sinks, puts them in place, reads, probes and deletes, for a local folder and an object
//! store alike. It is called from blocking threads (the pipeline's commit tasks): the object
//! store's futures are driven here, with the current runtime, and nowhere else in `lake`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use auditlake_schema::{LakeFile, LakeRoot};
use object_store::ObjectStoreExt;

use super::{WriteError, io};

/// Bytes a probe of a local lake writes (see [`Store::probe`]).
const PROBE_BYTES: usize = 1 << 20;

/// Where an open file's bytes go until it is published.
pub(super) enum Sink {
    /// A local temporary file, renamed into place on publish.
    Local { file: File, temp: PathBuf },
    /// Memory, put to the object store on publish (one PUT: whole or nothing).
    Memory(Vec<u8>),
}

impl Sink {
    /// Bytes the sink holds in memory (a whole file bound for an object store).
    pub(super) fn memory_size(&self) -> usize {
        match self {
            Sink::Memory(bytes) => bytes.len(),
            Sink::Local { .. } => 0,
        }
    }

    /// Makes a local file's bytes durable under its temporary name.
    pub(super) fn sync(&self) -> Result<(), WriteError> {
        match self {
            Sink::Local { file, temp } => file.sync_all().map_err(io("syncing", temp)),
            Sink::Memory(_) => Ok(()),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Local { file, .. } => file.write(buf),
            Sink::Memory(bytes) => bytes.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::Local { file, .. } => file.write_all(buf),
            Sink::Memory(bytes) => bytes.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Local { file, .. } => file.flush(),
            Sink::Memory(_) => Ok(()),
        }
    }
}

/// The name a local lake file is written under before it is renamed into place.
pub(super) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// The files of one lake root.
#[derive(Debug, Clone, Copy)]
pub(super) struct Store<'a>(pub &'a LakeRoot);

impl Store<'_> {
    fn store_err(&self, file: &str) -> impl FnOnce(object_store::Error) -> WriteError + use<> {
        let path = self.0.display_file(file);
        move |source| WriteError::Store { path, source }
    }

    /// A sink for `file`: locally its temporary file (and folder) created.
    pub(super) fn create(&self, file: &LakeFile) -> Result<Sink, WriteError> {
        match self.0 {
            LakeRoot::Local(root) => {
                let path = root.join(file.as_str());
                let dir = path.parent().unwrap_or(root).to_path_buf();
                std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
                let temp = temp_path(&path);
                let handle = File::create(&temp).map_err(io("creating", &temp))?;
                Ok(Sink::Local { file: handle, temp })
            }
            LakeRoot::Store { .. } => Ok(Sink::Memory(Vec::new())),
        }
    }

    /// Puts the complete `sink` in place as `file`: a local file renamed (its folder, returned,
    /// still to sync: see [`Store::sync_folders`]); an object store file put whole.
    pub(super) fn publish(
        &self,
        file: &LakeFile,
        sink: Sink,
    ) -> Result<Option<PathBuf>, WriteError> {
        match (sink, self.0) {
            (Sink::Local { file: handle, temp }, LakeRoot::Local(root)) => {
                drop(handle);
                let path = root.join(file.as_str());
                std::fs::rename(&temp, &path).map_err(io("renaming into place", &path))?;
                Ok(Some(path.parent().unwrap_or(root).to_path_buf()))
            }
            (Sink::Memory(bytes), LakeRoot::Store { url, store }) => {
                let location = LakeRoot::store_location(url, file.as_str());
                tokio::runtime::Handle::current()
                    .block_on(store.put(&location, bytes.into()))
                    .map_err(self.store_err(file.as_str()))?;
                Ok(None)
            }
            (_, _) => unreachable!("a sink is made by the store of its root"),
        }
    }

    /// Syncs local folders, so that the renames into them are durable.
    pub(super) fn sync_folders(folders: &[PathBuf]) -> Result<(), WriteError> {
        for dir in folders {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("syncing folder", dir))?;
        }
        Ok(())
    }

    /// The bytes of `file`, `None` if it does not exist.
    pub(super) fn read(&self, file: &LakeFile) -> Result<Option<bytes::Bytes>, WriteError> {
        match self.0 {
            LakeRoot::Local(root) => {
                let path = root.join(file.as_str());
                match std::fs::read(&path) {
                    Ok(bytes) => Ok(Some(bytes.into())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(io("reading", &path)(e)),
                }
            }
            LakeRoot::Store { url, store } => {
                let location = LakeRoot::store_location(url, file.as_str());
                let handle = tokio::runtime::Handle::current();
                match handle.block_on(store.get(&location)) {
                    Ok(result) => Ok(Some(
                        handle
                            .block_on(result.bytes())
                            .map_err(self.store_err(file.as_str()))?,
                    )),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(source) => Err(self.store_err(file.as_str())(source)),
                }
            }
        }
    }

    /// Every generation of `file` in its folder (see [`LakeFile::generation`]), oldest first;
    /// empty when none exists.
    pub(super) fn generations(&self, file: &LakeFile) -> Result<Vec<LakeFile>, WriteError> {
        let mut found: Vec<LakeFile> = match self.0 {
            LakeRoot::Local(root) => {
                let dir = root.join(file.folder());
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(e) => return Err(io("listing", &dir)(e)),
                };
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(io("listing", &dir))?;
                    if let Some(name) = entry.file_name().to_str() {
                        names.push(LakeFile::from(format!("{}/{name}", file.folder())));
                    }
                }
                names
            }
            LakeRoot::Store { url, store } => {
                use futures::TryStreamExt as _;
                let prefix = LakeRoot::store_location(url, file.folder());
                let listed: Vec<object_store::ObjectMeta> = tokio::runtime::Handle::current()
                    .block_on(store.list(Some(&prefix)).try_collect())
                    .map_err(self.store_err(file.folder()))?;
                listed
                    .iter()
                    .filter_map(|meta| meta.location.filename())
                    .map(|name| LakeFile::from(format!("{}/{name}", file.folder())))
                    .collect()
            }
        };
        found.retain(|candidate| candidate.same_base(file) || candidate == file);
        found.sort_by_key(|f| f.generation().map_or(0, |(_, n)| n));
        Ok(found)
    }

    /// Whether the lake takes a write now. A local lake writes, syncs and deletes a file of
    /// [`PROBE_BYTES`] at its root (a group needs at least that much room); a lake on an object
    /// store puts and deletes a small object there.
    pub(super) fn probe(&self) -> Result<(), WriteError> {
        let name = format!(".auditlake-probe-{:016x}.tmp", rand::random::<u64>());
        match self.0 {
            LakeRoot::Local(root) => {
                let path = root.join(&name);
                let written = (|| {
                    let mut file = File::create(&path)?;
                    file.write_all(&vec![0u8; PROBE_BYTES])?;
                    file.sync_all()
                })();
                let removed = std::fs::remove_file(&path);
                written.map_err(io("writing", &path))?;
                removed.map_err(io("deleting", &path))
            }
            LakeRoot::Store { url, store } => {
                let location = LakeRoot::store_location(url, &name);
                let handle = tokio::runtime::Handle::current();
                handle
                    .block_on(store.put(&location, bytes::Bytes::from_static(b"probe").into()))
                    .map_err(self.store_err(&name))?;
                handle
                    .block_on(store.delete(&location))
                    .map_err(self.store_err(&name))
            }
        }
    }

    /// Deletes `file` (and, locally, its temporary name), or with `published` false only what
    /// a group wrote before publishing: the temporary name of a local file (object store files
    /// are only put on publish). Files already gone are fine.
    pub(super) fn delete(&self, file: &LakeFile, published: bool) -> Result<(), WriteError> {
        match self.0 {
            LakeRoot::Local(root) => {
                let path = root.join(file.as_str());
                let candidates = if published {
                    vec![temp_path(&path), path]
                } else {
                    vec![temp_path(&path)]
                };
                for candidate in candidates {
                    match std::fs::remove_file(&candidate) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io("deleting", &candidate)(e)),
                    }
                }
                Ok(())
            }
            LakeRoot::Store { .. } if !published => Ok(()),
            LakeRoot::Store { url, store } => {
                let location = LakeRoot::store_location(url, file.as_str());
                match tokio::runtime::Handle::current().block_on(store.delete(&location)) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                    Err(source) => Err(self.store_err(file.as_str())(source)),
                }
            }
        }
    }
}
