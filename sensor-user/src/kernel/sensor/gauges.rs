//! How full the kernel's taint and channel maps are and how much of the ring buffer waits
//! unread, for the metrics. The maps are opened again by id, with descriptors of their own, so
//! that the metrics thread reads them at scrape time and the event loop never waits for it.

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU64, Ordering},
};

use aya::{
    maps::{HashMap, Map, MapData, MapError},
    Pod,
};
use sensor_common::{map_name, FileId, SendKey, SendTotal, Taint};

use super::{map_error, missing, Sensor};
use crate::error::Error;

/// The maps whose fill is reported: processes' taint, marked channels and derived files, and
/// the byte counts of sends (all three drop or evict when full).
const FILLED_MAPS: [(&str, Count); 3] = [
    (map_name::TAINTED, count::<u32, Taint>),
    (map_name::TAINTED_FILES, count::<FileId, Taint>),
    (map_name::SEND_TOTALS, count::<SendKey, SendTotal>),
];

/// Counts a map's entries, up to its capacity.
type Count = fn(&Map, u32) -> Result<u32, MapError>;

/// One map's entries and capacity, as last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fill {
    pub map: &'static str,
    pub entries: u32,
    pub capacity: u32,
}

/// The ring buffer's unread bytes and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingUse {
    pub unread: u64,
    pub capacity: u64,
}

/// Read-only handles on the kernel maps the metrics report.
pub struct KernelGauges {
    maps: Vec<(&'static str, Map, u32, Count)>,
    ring: RingPositions,
}

impl Sensor {
    /// Handles on the maps the metrics report; taken before the ring buffer is
    /// ([`Sensor::take_events`]).
    pub fn gauges(&self) -> Result<KernelGauges, Error> {
        let mut maps = Vec::with_capacity(FILLED_MAPS.len());
        for (name, count) in FILLED_MAPS {
            let data = self.reopen(name)?;
            let capacity = data.info().map_err(map_error(name))?.max_entries();
            maps.push((name, Map::from_map_data(data).map_err(map_error(name))?, capacity, count));
        }
        Ok(KernelGauges { maps, ring: RingPositions::map(self.reopen(map_name::EVENTS)?)? })
    }

    /// Map `name` opened again by its id.
    fn reopen(&self, name: &'static str) -> Result<MapData, Error> {
        let error = map_error(name);
        let Some(Map::HashMap(data) | Map::LruHashMap(data) | Map::RingBuf(data)) = self.ebpf.map(name)
        else {
            return Err(error(missing(name)));
        };
        MapData::from_id(data.info().map_err(&error)?.id()).map_err(error)
    }
}

impl KernelGauges {
    /// Each map's entries now (a map that cannot be read is left out).
    pub fn fill(&self) -> Vec<Fill> {
        self.maps
            .iter()
            .filter_map(|(map, handle, capacity, count)| {
                let entries = count(handle, *capacity).ok()?;
                Some(Fill { map, entries, capacity: *capacity })
            })
            .collect()
    }

    /// The ring buffer's unread bytes now.
    pub fn ring(&self) -> RingUse {
        self.ring.read()
    }
}

/// Walks `map`'s keys; a key deleted under the walk restarts it, so the count stops at
/// `capacity`.
fn count<K: Pod, V: Pod>(map: &Map, capacity: u32) -> Result<u32, MapError> {
    let map: HashMap<&MapData, K, V> = HashMap::try_from(map)?;
    let mut entries = 0;
    for key in map.keys().take(capacity as usize) {
        key?;
        entries += 1;
    }
    Ok(entries)
}

/// The ring buffer's consumer and producer positions (its first two pages, mapped read-only).
struct RingPositions {
    pages: NonNull<libc::c_void>,
    page_size: usize,
    capacity: u64,
    /// Keeps the map alive for as long as its pages are mapped.
    _map: MapData,
}

// SAFETY: the pages are only read, atomically, and stay mapped until drop.
unsafe impl Send for RingPositions {}

impl RingPositions {
    fn map(data: MapData) -> Result<Self, Error> {
        let capacity = u64::from(data.info().map_err(map_error(map_name::EVENTS))?.max_entries());
        // SAFETY: sysconf has no preconditions.
        let page_size = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let fd = data.fd().as_fd().as_raw_fd();
        // SAFETY: a new read-only shared mapping of the map's fd; the kernel lays the consumer
        // page, then the producer page, at offset 0 of a ring buffer map.
        let pages = unsafe {
            libc::mmap(std::ptr::null_mut(), 2 * page_size, libc::PROT_READ, libc::MAP_SHARED, fd, 0)
        };
        let pages = NonNull::new(pages).filter(|p| p.as_ptr() != libc::MAP_FAILED).ok_or_else(|| {
            Error::system("mapping the ring buffer's positions", std::io::Error::last_os_error())
        })?;
        Ok(Self { pages, page_size, capacity, _map: data })
    }

    fn read(&self) -> RingUse {
        let position = |offset: usize| {
            // SAFETY: each page starts with an 8-byte aligned position the kernel updates
            // atomically; the mapping lives as long as `self`.
            unsafe { (*self.pages.as_ptr().cast::<AtomicU64>().byte_add(offset)).load(Ordering::Acquire) }
        };
        let consumer = position(0);
        let producer = position(self.page_size);
        RingUse { unread: producer.saturating_sub(consumer).min(self.capacity), capacity: self.capacity }
    }
}

impl Drop for RingPositions {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, unmapped once.
        unsafe { libc::munmap(self.pages.as_ptr(), 2 * self.page_size) };
    }
}
