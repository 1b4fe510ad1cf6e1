//! The local file system as queries read it: a file's byte ranges are read on the calling
//! thread.
//!
//! `object_store`'s `LocalFileSystem` hands every read to tokio's blocking pool, so that a
//! slow disk never stalls a runtime thread. A query of a lake on local disk reads a few small
//! column chunks from each of hundreds of files, mostly from the page cache: each read then
//! costs two thread switches and a wake-up, more than the copy itself, while the query's own
//! thread waits. Queries run on their own runtime, so a read that does reach the disk delays
//! only the query that asked for it. Everything else is `LocalFileSystem`'s.

use std::fmt;
use std::ops::Range;
use std::os::unix::fs::FileExt as _;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct LocalReads(LocalFileSystem);

impl fmt::Display for LocalReads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalReads({})", self.0)
    }
}

/// Reads `ranges` of the file at `path`, in order.
fn read_ranges(path: &std::path::Path, ranges: &[Range<u64>]) -> std::io::Result<Vec<Bytes>> {
    let file = std::fs::File::open(path)?;
    ranges
        .iter()
        .map(|range| {
            let len = usize::try_from(range.end.saturating_sub(range.start))
                .map_err(std::io::Error::other)?;
            let mut buf = vec![0; len];
            // Fails with `UnexpectedEof` for a range past the end of the file.
            file.read_exact_at(&mut buf, range.start)?;
            Ok(Bytes::from(buf))
        })
        .collect()
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl ObjectStore for LocalReads {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.0.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.0.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.0.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let path = self.0.path_to_filesystem(location)?;
        read_ranges(&path, ranges).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => object_store::Error::NotFound {
                path: path.display().to_string(),
                source: source.into(),
            },
            _ => object_store::Error::Generic {
                store: "LocalReads",
                source: format!("reading {}: {source}", path.display()).into(),
            },
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.0.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.0.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.0.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.0.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.0.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        self.0.rename_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt as _;

    use super::*;

    #[tokio::test]
    async fn ranges_are_read_as_written_and_a_missing_file_or_range_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("data.bin");
        let content: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        std::fs::write(&file, &content).expect("write");
        let store = LocalReads::default();
        let location = Path::from_filesystem_path(&file).expect("path");

        let ranges = [0..10, 9_990..10_000, 300..300, 4_000..6_500];
        let read = store.get_ranges(&location, &ranges).await.expect("ranges");
        for (range, bytes) in ranges.iter().zip(&read) {
            let (start, end) = (range.start as usize, range.end as usize);
            assert_eq!(bytes.as_ref(), &content[start..end]);
        }
        // Whole reads and listings are LocalFileSystem's.
        let whole = store.get(&location).await.expect("get");
        assert_eq!(whole.bytes().await.expect("bytes").as_ref(), &content[..]);

        let past_the_end = store
            .get_ranges(&location, std::slice::from_ref(&(9_000..10_001)))
            .await;
        assert!(past_the_end.is_err(), "a range past the end is refused");
        let missing = Path::from_filesystem_path(dir.path())
            .expect("dir")
            .join("missing");
        assert!(matches!(
            store
                .get_ranges(&missing, std::slice::from_ref(&(0..1)))
                .await,
            Err(object_store::Error::NotFound { .. })
        ));
    }
}
