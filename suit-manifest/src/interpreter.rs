//! The SUIT command interpreter: runs a manifest's command sequences, keeping the parameters per
//! component, and asks the device (through [`Device`]) to evaluate conditions and carry out
//! directives. It implements the core draft's conditions and directives that a single-image A/B
//! updater needs; dependencies, delegation and encryption give [`Error::Unsupported`].
//!
//! Sans-IO note: `fetch` is the device's business. A device that downloads asynchronously answers
//! its first `fetch` by starting the download and failing the run; once the image is in place it
//! runs the procedure again, and `fetch` sees that the slot already matches `image-digest` (which
//! the draft allows a fetch to check first) and returns at once.

use crate::cbor::Reader;
use crate::cose::Sha256Digest;
use crate::error::{Error, Feature, Part};
use crate::keys::command as c;
use crate::limits::{MAX_COMMANDS, MAX_COMPONENTS, MAX_SEQUENCE_DEPTH};
use crate::manifest::{ComponentId, Manifest, SequenceKind};
use crate::params::{Mode, Parameters};

/// A component as the device sees it: its index in the manifest and its identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component<'a> {
    pub index: usize,
    pub id: ComponentId<'a>,
}

/// What the device does for the interpreter. Conditions answer `Ok(false)` when they do not hold;
/// `Err` is for the device failing (flash error, no such slot...).
pub trait Device<'a> {
    /// The device's own error type.
    type Error;
    /// suit-condition-vendor-identifier.
    fn check_vendor(
        &mut self,
        component: Component<'a>,
        vendor_id: &'a [u8],
    ) -> Result<bool, Self::Error>;
    /// suit-condition-class-identifier.
    fn check_class(
        &mut self,
        component: Component<'a>,
        class_id: &'a [u8],
    ) -> Result<bool, Self::Error>;
    /// suit-condition-device-identifier. By default no device identifier matches.
    fn check_device(
        &mut self,
        component: Component<'a>,
        device_id: &'a [u8],
    ) -> Result<bool, Self::Error> {
        let _ = (component, device_id);
        Ok(false)
    }
    /// suit-condition-component-slot: whether `slot` is the slot this component would be written to.
    fn check_slot(&mut self, component: Component<'a>, slot: u64) -> Result<bool, Self::Error>;
    /// suit-condition-image-match: whether the component's stored image has this digest (and size).
    fn check_image(
        &mut self,
        component: Component<'a>,
        digest: &Sha256Digest,
        size: Option<u64>,
    ) -> Result<bool, Self::Error>;
    /// suit-condition-check-content. By default content never matches.
    fn check_content(
        &mut self,
        component: Component<'a>,
        content: &'a [u8],
    ) -> Result<bool, Self::Error> {
        let _ = (component, content);
        Ok(false)
    }
    /// suit-directive-fetch: get the payload at `params.uri` into the component.
    fn fetch(
        &mut self,
        component: Component<'a>,
        params: &Parameters<'a>,
    ) -> Result<(), Self::Error>;
    /// suit-directive-copy: copy `source` into `component`.
    fn copy(
        &mut self,
        component: Component<'a>,
        source: Component<'a>,
        params: &Parameters<'a>,
    ) -> Result<(), Self::Error>;
    /// suit-directive-swap.
    fn swap(&mut self, component: Component<'a>, source: Component<'a>) -> Result<(), Self::Error>;
    /// suit-directive-write: write `content` into the component.
    fn write(&mut self, component: Component<'a>, content: &'a [u8]) -> Result<(), Self::Error>;
    /// suit-directive-invoke: hand control to the component.
    fn invoke(
        &mut self,
        component: Component<'a>,
        args: Option<&'a [u8]>,
    ) -> Result<(), Self::Error>;
}

/// Why a run stopped: the manifest (a failed condition, a malformed command...) or the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunError<E> {
    Suit(Error),
    Device(E),
}

impl<E> From<Error> for RunError<E> {
    fn from(e: Error) -> Self {
        RunError::Suit(e)
    }
}

/// How a sequence ended without error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Completed,
    /// A condition failed while soft-failure was true: the sequence stopped, not as an error.
    SoftAborted,
}

/// The part of the state that belongs to one running sequence.
#[derive(Clone, Copy)]
struct Frame {
    soft_failure: bool,
    /// Inside try-each or run-sequence, where soft-failure may be set.
    nested: bool,
    shared: bool,
    depth: usize,
}

/// A set of component indices (`set-component-index` may select several).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Selection(u8);

impl Selection {
    fn one(index: usize) -> Self {
        Selection(1u8.checked_shl(index as u32).unwrap_or(0))
    }
    fn indices(self) -> impl Iterator<Item = usize> {
        (0..MAX_COMPONENTS).filter(move |i| self.0 & Selection::one(*i).0 != 0)
    }
}

/// Runs procedures of one manifest.
pub struct Interpreter<'m, 'a> {
    manifest: &'m Manifest<'a>,
    params: [Parameters<'a>; MAX_COMPONENTS],
    selection: Selection,
}

impl<'m, 'a> Interpreter<'m, 'a> {
    /// An interpreter with all parameters unset.
    pub fn new(manifest: &'m Manifest<'a>) -> Self {
        Interpreter {
            manifest,
            params: [Parameters::default(); MAX_COMPONENTS],
            selection: Selection::one(0),
        }
    }

    /// The parameters of component `index` as the last run left them.
    pub fn parameters(&self, index: usize) -> Option<&Parameters<'a>> {
        if index < self.manifest.component_count() {
            self.params.get(index)
        } else {
            None
        }
    }

    /// The update procedure: payload-fetch, install, then validate (each after the shared sequence).
    pub fn update<D: Device<'a>>(&mut self, device: &mut D) -> Result<(), RunError<D::Error>> {
        self.reset();
        let kinds = [
            SequenceKind::PayloadFetch,
            SequenceKind::Install,
            SequenceKind::Validate,
        ];
        Erased::run(device, |d| self.run_procedure(&kinds, d))
    }

    /// The invocation procedure: validate, load, then invoke.
    pub fn invoke<D: Device<'a>>(&mut self, device: &mut D) -> Result<(), RunError<D::Error>> {
        self.reset();
        let kinds = [
            SequenceKind::Validate,
            SequenceKind::Load,
            SequenceKind::Invoke,
        ];
        Erased::run(device, |d| self.run_procedure(&kinds, d))
    }

    /// Runs one sequence after the shared sequence; an absent sequence does nothing.
    pub fn run<D: Device<'a>>(
        &mut self,
        kind: SequenceKind,
        device: &mut D,
    ) -> Result<(), RunError<D::Error>> {
        Erased::run(device, |d| self.run_procedure(&[kind], d))
    }

    fn reset(&mut self) {
        self.params = [Parameters::default(); MAX_COMPONENTS];
    }

    fn run_procedure(
        &mut self,
        kinds: &[SequenceKind],
        device: &mut dyn Dispatch<'a>,
    ) -> Result<(), RunError<()>> {
        for kind in kinds {
            let Some(bytes) = self.manifest.sequence(*kind)? else {
                continue;
            };
            if let Some(shared) = self.manifest.sequence(SequenceKind::Shared)? {
                self.top_level(shared, true, device)?;
            }
            if *kind != SequenceKind::Shared {
                self.top_level(bytes, false, device)?;
            }
        }
        Ok(())
    }

    fn top_level(
        &mut self,
        bytes: &'a [u8],
        shared: bool,
        device: &mut dyn Dispatch<'a>,
    ) -> Result<(), RunError<()>> {
        self.selection = Selection::one(0);
        let frame = Frame {
            soft_failure: false,
            nested: false,
            shared,
            depth: 0,
        };
        // soft-failure cannot be set at top level, so a sequence here never ends soft-aborted.
        self.sequence(bytes, frame, device).map(|_| ())
    }

    fn sequence(
        &mut self,
        bytes: &'a [u8],
        mut frame: Frame,
        device: &mut dyn Dispatch<'a>,
    ) -> Result<Flow, RunError<()>> {
        if frame.depth >= MAX_SEQUENCE_DEPTH {
            return Err(Error::TooDeep.into());
        }
        let mut r = Reader::new(bytes, Part::Sequence);
        let items = r.array()?;
        if items % 2 != 0 || items == 0 {
            return Err(Error::MalformedCommand.into());
        }
        if items / 2 > MAX_COMMANDS as u64 {
            return Err(Error::TooManyCommands.into());
        }
        for _ in 0..items / 2 {
            let code = r.i64().map_err(|_| Error::MalformedCommand)?;
            if let Flow::SoftAborted = self.command(code, &mut r, &mut frame, device)? {
                return Ok(Flow::SoftAborted);
            }
        }
        r.finish()?;
        Ok(Flow::Completed)
    }

    fn command(
        &mut self,
        code: i64,
        r: &mut Reader<'a>,
        frame: &mut Frame,
        device: &mut dyn Dispatch<'a>,
    ) -> Result<Flow, RunError<()>> {
        match code {
            c::VENDOR_IDENTIFIER
            | c::CLASS_IDENTIFIER
            | c::IMAGE_MATCH
            | c::COMPONENT_SLOT
            | c::CHECK_CONTENT
            | c::DEVICE_IDENTIFIER
            | c::ABORT => {
                report_policy(r)?;
                for index in self.selection.indices() {
                    if !self.condition(code, index, device)? {
                        if frame.soft_failure {
                            return Ok(Flow::SoftAborted);
                        }
                        return Err(if code == c::ABORT {
                            Error::Aborted
                        } else {
                            Error::ConditionFailed(code)
                        }
                        .into());
                    }
                }
            }
            c::SET_COMPONENT_INDEX => self.selection = self.component_index(r)?,
            c::OVERRIDE_PARAMETERS | c::SET_PARAMETERS => {
                if code == c::SET_PARAMETERS && frame.shared {
                    return Err(Error::CommandNotAllowedInSharedSequence.into());
                }
                let mode = if code == c::OVERRIDE_PARAMETERS {
                    Mode::Override
                } else {
                    Mode::Set
                };
                let map_start = r.clone();
                let mut soft = None;
                r.skip()?;
                for index in self.selection.indices() {
                    let mut m = map_start.clone();
                    let params = self
                        .params
                        .get_mut(index)
                        .ok_or(Error::ComponentIndexOutOfRange)?;
                    soft = params.apply(&mut m, mode)?;
                }
                if let Some(value) = soft {
                    if !frame.nested {
                        return Err(Error::SoftFailureOutsideTryEach.into());
                    }
                    frame.soft_failure = value;
                }
            }
            c::TRY_EACH => {
                let arg = r.clone();
                r.skip()?;
                let saved = self.selection;
                for index in saved.indices() {
                    self.selection = Selection::one(index);
                    self.try_each(&mut arg.clone(), frame, device)?;
                }
                self.selection = saved;
            }
            c::RUN_SEQUENCE => {
                let bytes = r.bytes()?;
                let saved = self.selection;
                for index in saved.indices() {
                    self.selection = Selection::one(index);
                    let inner = Frame {
                        soft_failure: false,
                        nested: true,
                        shared: frame.shared,
                        depth: frame.depth + 1,
                    };
                    // A soft abort inside run-sequence does not propagate.
                    self.sequence(bytes, inner, device)?;
                }
                self.selection = saved;
            }
            c::FETCH | c::COPY | c::SWAP | c::WRITE | c::INVOKE => {
                if frame.shared {
                    return Err(Error::CommandNotAllowedInSharedSequence.into());
                }
                report_policy(r)?;
                for index in self.selection.indices() {
                    self.directive(code, index, device)?;
                }
            }
            c::USE_BEFORE
            | c::DEPENDENCY_INTEGRITY
            | c::IS_DEPENDENCY
            | c::PROCESS_DEPENDENCY
            | c::UNLINK => {
                return Err(Error::Unsupported(Feature::Command).into());
            }
            _ => return Err(Error::UnknownCommand.into()),
        }
        Ok(Flow::Completed)
    }

    fn try_each(
        &mut self,
        r: &mut Reader<'a>,
        frame: &Frame,
        device: &mut dyn Dispatch<'a>,
    ) -> Result<(), RunError<()>> {
        let n = r.array()?;
        if n < 2 {
            return Err(Error::MalformedCommand.into());
        }
        let mut done = false;
        for i in 0..n {
            if r.datatype()? == crate::cbor::Type::Null {
                // Only the last entry may be nil: "all may fail".
                if i + 1 != n {
                    return Err(Error::MalformedCommand.into());
                }
                r.null()?;
                done = true;
                continue;
            }
            let bytes = r.bytes()?;
            if done {
                continue;
            }
            let inner = Frame {
                soft_failure: true,
                nested: true,
                shared: frame.shared,
                depth: frame.depth + 1,
            };
            if self.sequence(bytes, inner, device)? == Flow::Completed {
                done = true;
            }
        }
        if done {
            Ok(())
        } else {
            Err(Error::TryEachFailed.into())
        }
    }

    fn component(&self, index: usize) -> Result<Component<'a>, Error> {
        let id = self
            .manifest
            .component(index)
            .ok_or(Error::ComponentIndexOutOfRange)?;
        Ok(Component { index, id })
    }

    fn param(&self, index: usize) -> Result<&Parameters<'a>, Error> {
        self.params
            .get(index)
            .ok_or(Error::ComponentIndexOutOfRange)
    }

    fn condition(
        &mut self,
        code: i64,
        index: usize,
        device: &mut dyn Dispatch<'a>,
    ) -> Result<bool, RunError<()>> {
        let comp = self.component(index)?;
        let p = *self.param(index)?;
        let missing = |k| RunError::Suit(Error::MissingParameter(k));
        use crate::keys::parameter as k;
        let call = match code {
            c::VENDOR_IDENTIFIER => {
                Call::Vendor(p.vendor_id.ok_or_else(|| missing(k::VENDOR_IDENTIFIER))?)
            }
            c::CLASS_IDENTIFIER => {
                Call::Class(p.class_id.ok_or_else(|| missing(k::CLASS_IDENTIFIER))?)
            }
            c::DEVICE_IDENTIFIER => {
                Call::Device(p.device_id.ok_or_else(|| missing(k::DEVICE_IDENTIFIER))?)
            }
            c::COMPONENT_SLOT => {
                Call::Slot(p.component_slot.ok_or_else(|| missing(k::COMPONENT_SLOT))?)
            }
            c::IMAGE_MATCH => Call::Image(
                p.image_digest.ok_or_else(|| missing(k::IMAGE_DIGEST))?,
                p.image_size,
            ),
            c::CHECK_CONTENT => Call::Content(p.content.ok_or_else(|| missing(k::CONTENT))?),
            _ => return Ok(false), // abort
        };
        device.call(comp, call).map_err(RunError::Device)
    }

    fn directive(
        &mut self,
        code: i64,
        index: usize,
        device: &mut dyn Dispatch<'a>,
    ) -> Result<(), RunError<()>> {
        use crate::keys::parameter as k;
        let comp = self.component(index)?;
        let p = *self.param(index)?;
        let source = || -> Result<Component<'a>, Error> {
            let src = p
                .source_component
                .ok_or(Error::MissingParameter(k::SOURCE_COMPONENT))?;
            self.component(usize::try_from(src).map_err(|_| Error::ComponentIndexOutOfRange)?)
        };
        let call = match code {
            c::FETCH => {
                p.uri.ok_or(Error::MissingParameter(k::URI))?;
                Call::Fetch(&p)
            }
            c::COPY => Call::Copy(source()?, &p),
            c::SWAP => Call::Swap(source()?),
            c::WRITE => Call::Write(p.content.ok_or(Error::MissingParameter(k::CONTENT))?),
            _ => Call::Invoke(p.invoke_args),
        };
        device
            .call(comp, call)
            .map(|_| ())
            .map_err(RunError::Device)
    }

    fn component_index(&self, r: &mut Reader<'a>) -> Result<Selection, Error> {
        let count = self.manifest.component_count();
        let check = |i: u64| -> Result<Selection, Error> {
            let i = usize::try_from(i).map_err(|_| Error::ComponentIndexOutOfRange)?;
            if i < count {
                Ok(Selection::one(i))
            } else {
                Err(Error::ComponentIndexOutOfRange)
            }
        };
        match r.datatype()? {
            crate::cbor::Type::Bool => {
                if r.bool()? {
                    Ok(Selection(
                        (0..count).fold(0, |acc, i| acc | Selection::one(i).0),
                    ))
                } else {
                    Err(Error::MalformedCommand)
                }
            }
            crate::cbor::Type::Array => {
                let n = r.array()?;
                if n == 0 || n > MAX_COMPONENTS as u64 {
                    return Err(Error::ComponentIndexOutOfRange);
                }
                let mut sel = 0u8;
                for _ in 0..n {
                    sel |= check(r.u64()?)?.0;
                }
                Ok(Selection(sel))
            }
            _ => check(r.u64()?),
        }
    }
}

/// One request of the interpreter to the device: a condition or a directive with its arguments.
enum Call<'a, 'p> {
    Vendor(&'a [u8]),
    Class(&'a [u8]),
    Device(&'a [u8]),
    Slot(u64),
    Image(Sha256Digest, Option<u64>),
    Content(&'a [u8]),
    Fetch(&'p Parameters<'a>),
    Copy(Component<'a>, &'p Parameters<'a>),
    Swap(Component<'a>),
    Write(&'a [u8]),
    Invoke(Option<&'a [u8]>),
}

/// The interpreter's view of a device: one call, the device's error kept aside. The interpreter
/// runs on `&mut dyn Dispatch`, so its code is in the image once, not once per device type (the
/// engine's checks and [`crate::describe`]'s probe).
trait Dispatch<'a> {
    /// Ok(whether the condition holds; true for a directive), or Err(()) when the device failed.
    fn call(&mut self, component: Component<'a>, call: Call<'a, '_>) -> Result<bool, ()>;
}

/// A [`Device`] as a [`Dispatch`], holding the device's error until the run returns.
struct Erased<'d, 'a, D: Device<'a>> {
    device: &'d mut D,
    error: Option<D::Error>,
    _manifest: core::marker::PhantomData<&'a ()>,
}

impl<'d, 'a, D: Device<'a>> Erased<'d, 'a, D> {
    /// Runs `f` on the erased `device` and gives back the device's own error.
    fn run(
        device: &'d mut D,
        f: impl FnOnce(&mut dyn Dispatch<'a>) -> Result<(), RunError<()>>,
    ) -> Result<(), RunError<D::Error>> {
        let mut erased = Erased {
            device,
            error: None,
            _manifest: core::marker::PhantomData,
        };
        match f(&mut erased) {
            Ok(()) => Ok(()),
            Err(RunError::Suit(e)) => Err(RunError::Suit(e)),
            // Dispatch::call stores the error before it returns Err(()), so it is always there.
            Err(RunError::Device(())) => Err(erased
                .error
                .map_or(RunError::Suit(Error::Aborted), RunError::Device)),
        }
    }
}

impl<'a, D: Device<'a>> Dispatch<'a> for Erased<'_, 'a, D> {
    fn call(&mut self, c: Component<'a>, call: Call<'a, '_>) -> Result<bool, ()> {
        let d = &mut *self.device;
        let done = match call {
            Call::Vendor(v) => d.check_vendor(c, v),
            Call::Class(v) => d.check_class(c, v),
            Call::Device(v) => d.check_device(c, v),
            Call::Slot(slot) => d.check_slot(c, slot),
            Call::Image(digest, size) => d.check_image(c, &digest, size),
            Call::Content(v) => d.check_content(c, v),
            Call::Fetch(p) => d.fetch(c, p).map(|()| true),
            Call::Copy(source, p) => d.copy(c, source, p).map(|()| true),
            Call::Swap(source) => d.swap(c, source).map(|()| true),
            Call::Write(v) => d.write(c, v).map(|()| true),
            Call::Invoke(args) => d.invoke(c, args).map(|()| true),
        };
        done.map_err(|e| self.error = Some(e))
    }
}

/// Reads a command's reporting policy; this device keeps no reports, so its bits are not used.
fn report_policy(r: &mut Reader<'_>) -> Result<(), Error> {
    r.u64().map(|_| ()).map_err(|_| Error::MalformedCommand)
}
