//! One skeleton's lifecycle, the same for every probe: open (with the BTF file for this
//! kernel when it has none of its own, see [`crate::kernel::custom_btf`]) → plan (autoload,
//! maps left uncreated) → ring sizing → the probe's own settings → load → attach → ring
//! reader, in [`Skeleton::load`]; and the storage libbpf-rs opens the object into, owned by
//! the [`Skeleton`] and freed with it, so a reload (a sub-item change) leaks nothing.

use std::ffi::{CString, OsStr};
use std::mem::MaybeUninit;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, Object, OpenObject};

use crate::plan::Plan;
use crate::ring::{ring_bytes, RingReader};
use crate::Error;

/// What [`Skeleton::load`] does besides opening, loading and attaching.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    /// Which programs load ([`Plan::apply`]).
    pub plan: &'a Plan,
    /// The ring buffer maps [`Skeleton::ring`] reads, in this order (none: no reader).
    pub rings: &'a [&'a str],
    /// The `ringbuf_map_size` param (MB) the `rings` are sized from before load; `None`
    /// keeps the sizes the object declares.
    pub ring_mb: Option<u32>,
    /// Programs the probe attaches itself, when and where it needs them (auto-attach off).
    pub manual: &'a [&'a str],
}

impl<'a> Setup<'a> {
    /// Loads what `plan` chose, attaches everything, reads no ring buffer.
    pub fn new(plan: &'a Plan) -> Self {
        Setup {
            plan,
            rings: &[],
            ring_mb: None,
            manual: &[],
        }
    }

    /// Reads the ring buffer maps `rings` (in this order).
    pub fn rings(self, rings: &'a [&'a str]) -> Self {
        Setup { rings, ..self }
    }

    /// Sizes the ring buffers from the `ringbuf_map_size` param (MB, see [`ring_bytes`]).
    pub fn ring_mb(self, ringbuf_map_size: u32) -> Self {
        Setup {
            ring_mb: Some(ringbuf_map_size),
            ..self
        }
    }

    /// Leaves programs `manual` for the probe to attach.
    pub fn manual(self, manual: &'a [&'a str]) -> Self {
        Setup { manual, ..self }
    }
}

/// The heap slot libbpf-rs opens the object into. The skeleton borrows it for `'static`;
/// [`Skeleton`] drops the skeleton first (field order), then frees the slot here.
struct Storage(NonNull<MaybeUninit<OpenObject>>);

impl Storage {
    fn new() -> Self {
        Storage(NonNull::from(Box::leak(Box::new(MaybeUninit::uninit()))))
    }

    /// The slot, for the skeleton to borrow.
    ///
    /// # Safety
    /// Call once; whatever borrows the slot must be dropped before `self`.
    unsafe fn slot(&mut self) -> &'static mut MaybeUninit<OpenObject> {
        // SAFETY: the pointer came from `Box::leak` and is freed only in `drop`; the
        // caller keeps the one borrow shorter than `self`.
        unsafe { &mut *self.0.as_ptr() }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        // SAFETY: allocated by `Box::new` in `new`, freed once here; the skeleton that
        // borrowed it is gone (its `OwnedRef` already dropped the object in the slot, and
        // `MaybeUninit` drops nothing).
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A loaded and attached skeleton `S` (a libbpf-cargo `<Name>Skel<'static>`) with the
/// reader of its ring buffers. Derefs to `S` (its `maps`, `progs`, `links`). Anything the
/// probe makes from it (links it attached itself, map handles) must be dropped before it.
pub struct Skeleton<S> {
    // Field order is drop order: the reader uses the maps, the skeleton the storage.
    ring: Option<RingReader>,
    skel: S,
    _storage: Storage,
}

impl<S: Skel<'static>> Skeleton<S> {
    /// Opens the object of `builder`, applies `setup` (plan, manual attachment, ring sizes),
    /// lets `configure` set what must be set before load (read-only data, the probe's own
    /// map sizes), loads, attaches the auto-attached programs and builds the ring buffer
    /// reader.
    pub fn load<B>(
        builder: B,
        setup: &Setup<'_>,
        configure: impl FnOnce(&mut B::Output) -> Result<(), Error>,
    ) -> Result<Self, Error>
    where
        B: SkelBuilder<'static>,
        B::Output: OpenSkel<'static, Output = S>,
    {
        // Declared before `open`, dropped after it on every early return.
        let mut storage = Storage::new();
        // SAFETY: the only borrow; it ends up in `skel`, which is dropped before
        // `storage` (here by declaration order, in `Skeleton` by field order).
        let slot = unsafe { storage.slot() };
        // On a kernel without BTF of its own, CO-RE relocates against the BTF file for it.
        let btf_path = crate::kernel::custom_btf()
            .and_then(|p| CString::new(p.into_os_string().into_encoded_bytes()).ok());
        let mut open = match &btf_path {
            None => builder.open(slot),
            Some(path) => {
                let opts = libbpf_sys::bpf_object_open_opts {
                    sz: std::mem::size_of::<libbpf_sys::bpf_object_open_opts>() as _,
                    btf_custom_path: path.as_ptr(),
                    ..Default::default()
                };
                // libbpf copies the path; `path` outlives the call anyway.
                builder.open_opts(opts, slot)
            }
        }
        .map_err(Error::bpf("opening the BPF object"))?;
        let object = open.open_object_mut();
        setup.plan.apply(object)?;
        for name in setup.manual {
            let mut prog = object
                .progs_mut()
                .find(|p| p.name() == OsStr::new(name))
                .ok_or_else(|| Error::NoSuchProgram((*name).to_owned()))?;
            prog.set_autoattach(false);
        }
        if let Some(mb) = setup.ring_mb {
            for name in setup.rings {
                let mut map = object
                    .maps_mut()
                    .find(|m| m.name() == OsStr::new(name))
                    .ok_or_else(|| Error::NoSuchMap((*name).to_owned()))?;
                map.set_max_entries(ring_bytes(mb))
                    .map_err(Error::bpf(format!("sizing ring buffer {name}")))?;
            }
        }
        configure(&mut open)?;
        let mut skel = open
            .load()
            .map_err(Error::bpf("loading the BPF programs"))?;
        skel.attach()
            .map_err(Error::bpf("attaching the BPF programs"))?;
        let ring = if setup.rings.is_empty() {
            None
        } else {
            Some(ring_reader(skel.object(), setup.rings)?)
        };
        Ok(Skeleton {
            ring,
            skel,
            _storage: storage,
        })
    }

    /// The loaded BPF object.
    pub fn object(&self) -> &Object {
        self.skel.object()
    }
}

impl<S> Skeleton<S> {
    /// The reader of the ring buffers named in [`Setup::rings`] (`None` without them).
    pub fn ring(&mut self) -> Option<&mut RingReader> {
        self.ring.as_mut()
    }
}

/// A reader of the maps `names` of `object`.
fn ring_reader(object: &Object, names: &[&str]) -> Result<RingReader, Error> {
    let maps = names
        .iter()
        .map(|name| {
            object
                .maps()
                .find(|m| m.name() == OsStr::new(name))
                .ok_or_else(|| Error::NoSuchMap((*name).to_owned()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&dyn MapCore> = maps.iter().map(|m| m as &dyn MapCore).collect();
    RingReader::new(&refs)
}

impl<S> Deref for Skeleton<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.skel
    }
}

impl<S> DerefMut for Skeleton<S> {
    fn deref_mut(&mut self) -> &mut S {
        &mut self.skel
    }
}

/// Opens the object of `builder` (no privileges needed, nothing is loaded) and checks
/// `subitems` against it with [`crate::plan::check_programs`], and that the snooper
/// control block can be written ([`crate::snoop::ctl_value`]): for each probe's unit test.
pub fn check_skeleton<B>(builder: B, subitems: &[crate::plan::Subitem]) -> Vec<String>
where
    for<'obj> B: SkelBuilder<'obj>,
{
    let mut slot = MaybeUninit::uninit();
    let problems = match builder.open(&mut slot) {
        Ok(open) => {
            let mut problems = crate::plan::check_programs(subitems, open.open_object());
            if let Err(e) = crate::snoop::ctl_value(open.open_object(), 1, 2) {
                problems.push(e.to_string());
            }
            problems
        }
        Err(e) => vec![format!("opening the BPF object: {e}")],
    };
    problems
}
