//! A source that holds objects given to it in memory: the pipeline's unit tests feed it
//! objects and failures without files or servers, and watch what it is told.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use super::{Listing, LogSource, Positions, SourceError, SourceObject};

/// The in-memory source; see the module documentation.
#[derive(Debug, Default)]
pub struct MemorySource {
    name: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Listings still to yield, in order; once they are gone, the last is yielded again.
    listings: VecDeque<Listing>,
    contents: HashMap<String, Vec<u8>>,
    /// URIs whose next fetches fail, and how many more times.
    failing: HashMap<String, usize>,
    fetched: Vec<String>,
    acknowledged: Vec<HashSet<String>>,
}

impl MemorySource {
    pub fn new(name: &str) -> Self {
        MemorySource {
            name: name.to_owned(),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An object of `content` under `key`, named `mem://<name>/<key>`, version `version`.
    pub fn object(&self, key: &str, version: &str, content: &[u8]) -> SourceObject {
        let object = SourceObject {
            uri: format!("mem://{}/{key}", self.name),
            key: key.to_owned(),
            version: version.to_owned(),
            size: content.len() as u64,
            modified_micros: 0,
        };
        self.state()
            .contents
            .insert(object.uri.clone(), content.to_vec());
        object
    }

    /// Queues a listing to yield.
    pub fn push(&self, listing: Listing) {
        self.state().listings.push_back(listing);
    }

    /// Queues a listing of `objects` whose position `cursor` is saved after all of them.
    pub fn push_objects(&self, objects: Vec<SourceObject>, cursor: Option<(&str, &[u8])>) {
        let positions = Positions::AfterAll(
            cursor
                .map(|(name, value)| vec![(name.to_owned(), value.to_vec())])
                .unwrap_or_default(),
        );
        self.push(Listing {
            objects,
            positions,
            ..Listing::default()
        });
    }

    /// Makes the next `times` fetches of `uri` fail.
    pub fn fail_fetches(&self, uri: &str, times: usize) {
        self.state().failing.insert(uri.to_owned(), times);
    }

    /// The content given for `object`, without counting a fetch.
    pub fn fetch_now(&self, object: &SourceObject) -> Vec<u8> {
        self.state()
            .contents
            .get(&object.uri)
            .cloned()
            .unwrap_or_default()
    }

    /// URIs fetched so far, in order.
    pub fn fetched(&self) -> Vec<String> {
        self.state().fetched.clone()
    }

    /// What each acknowledgement held, in order.
    pub fn acknowledged(&self) -> Vec<HashSet<String>> {
        self.state().acknowledged.clone()
    }
}

#[async_trait::async_trait]
impl LogSource for MemorySource {
    fn name(&self) -> &str {
        &self.name
    }

    async fn list(&self) -> Result<Listing, SourceError> {
        let mut state = self.state();
        let next = if state.listings.len() > 1 {
            state.listings.pop_front()
        } else {
            state.listings.front().cloned()
        };
        Ok(next.unwrap_or_default())
    }

    async fn fetch(&self, object: &SourceObject) -> Result<Vec<u8>, SourceError> {
        let mut state = self.state();
        state.fetched.push(object.uri.clone());
        if let Some(left) = state.failing.get_mut(&object.uri)
            && *left > 0
        {
            *left -= 1;
            return Err(SourceError::Fetch {
                uri: object.uri.clone(),
                source: std::io::Error::other("a failure the test asked for"),
            });
        }
        state
            .contents
            .get(&object.uri)
            .cloned()
            .ok_or_else(|| SourceError::Gone {
                uri: object.uri.clone(),
            })
    }

    async fn acknowledge(&self, recorded: &HashSet<String>) -> Result<(), SourceError> {
        self.state().acknowledged.push(recorded.clone());
        Ok(())
    }
}
