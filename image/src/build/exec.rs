//! The executor: stages in order (only those the target needs), each
//! instruction looked up in the cache, else run, and the final image written
//! and tagged.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufReader, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tracing::info;

use super::archive;
use super::cache::{self, Cache};
use super::copy::{self, Attrs, Dest, Source};
use super::dangling;
use super::dockerfile::{
    self, Command, CopyArgs, Dockerfile, Health, Instruction, RunArgs, ShellOrExec, Stage,
};
use super::error::BuildError;
use super::ignore::{clean, Ignore};
use super::layer;
use super::lex::{process_word, process_words, Vars};
use super::mount::{self, Mounted};
use super::platform;
use super::run::{self, Net};
use super::state::{strings, State, PENDING_LAYER};
use super::{BuildEvent, BuildOptions, BuildResult, Builder, NetworkMode};
use crate::config_to_spec::{self, Overrides};
use crate::digest::{chain_ids, Digest};
use crate::manifest::{self, ImageConfig, Platform};
use crate::reference::ImageRef;
use crate::store::{unique_name, Store};
use crate::unpack::{self, safe_path::Root, Mode, UnpackOptions};

const MAX_DOCKERFILE: u64 = 4 << 20;
const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];
/// Build args every RUN may use without an ARG line (Docker's list).
const PREDEFINED_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The build's scratch directory: everything below is unmounted and removed on drop.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        mount::unmount_below(&self.0);
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove build directory");
            }
        }
    }
}

pub(super) fn build(
    b: &Builder,
    context: impl Read + Send,
    opts: &BuildOptions,
    out: &mut dyn FnMut(BuildEvent),
) -> Result<BuildResult, BuildError> {
    let mut tags = Vec::new();
    for t in &opts.tags {
        let r = ImageRef::parse(t).map_err(|e| BuildError::Options(format!("invalid tag: {e}")))?;
        if r.digest().is_some() {
            return Err(BuildError::Options(format!(
                "tag {t:?} must not hold a digest"
            )));
        }
        tags.push(r.to_string());
    }
    let store = b.store.as_ref();
    let _lock = store.lock(false)?;
    // Absolute: the bundle's root.path and the overlay options name paths below it.
    let store_root = std::path::absolute(store.root())
        .map_err(|e| BuildError::io("resolving the store directory", e))?;
    let work = WorkDir(store_root.join("build-tmp").join(unique_name("build")));
    let ctx_dir = work.0.join("context");
    std::fs::create_dir_all(&ctx_dir)
        .map_err(|e| BuildError::io("creating the build directory", e))?;

    let bounded = context.take(opts.max_context_bytes);
    let hashes = super::context::extract(
        BufReader::new(bounded),
        &ctx_dir,
        opts.max_context_bytes,
        opts.max_context_entries,
    )?;
    // Sources resolve to real paths; the digests are keyed below this one.
    let ctx_real = std::fs::canonicalize(&ctx_dir)
        .map_err(|e| BuildError::io("resolving the context directory", e))?;

    let dockerfile_text = read_context_file(&ctx_dir, &opts.dockerfile)?.ok_or_else(|| {
        BuildError::Context(format!(
            "cannot find Dockerfile {:?} in the build context",
            opts.dockerfile
        ))
    })?;
    let dockerfile_text = String::from_utf8(dockerfile_text)
        .map_err(|_| BuildError::Context(format!("{} is not UTF-8 text", opts.dockerfile)))?;
    let ignore_name = format!("{}.dockerignore", opts.dockerfile);
    let ignore_text = match read_context_file(&ctx_dir, &ignore_name)? {
        Some(t) => Some(t),
        None => read_context_file(&ctx_dir, ".dockerignore")?,
    };
    if let Some(t) = ignore_text {
        let ig = Ignore::parse(&String::from_utf8_lossy(&t))
            .map_err(|e| BuildError::Context(format!(".dockerignore: {e}")))?;
        apply_ignore(&ctx_dir, "", &ig).map_err(|e| BuildError::io("applying .dockerignore", e))?;
    }
    let df = dockerfile::parse(&dockerfile_text)?;

    let mut ex = Exec {
        b,
        store,
        opts,
        work: &work.0,
        ctx_dir: &ctx_dir,
        ctx_real: &ctx_real,
        hashes: &hashes,
        escape: df.escape,
        cache: Cache::open(store).map_err(|e| BuildError::io("opening the build cache", e))?,
        out,
        step: 0,
        total: 0,
        seq: 0,
        cached: 0,
        used_args: BTreeSet::new(),
        meta: Vars::new(),
        built: HashMap::new(),
        platform: opts.platform.clone().unwrap_or_else(Platform::host),
        pending: Vec::new(),
        stored: HashMap::new(),
        deferred: Vec::new(),
    };
    match ex.run(&df) {
        Ok(state) => ex.finish(state, tags),
        Err(e) => {
            // What finished before the failure is still cached.
            let _ = ex.settle_layers();
            Err(e)
        }
    }
}

/// Reads a small file of the context (Dockerfile, .dockerignore) beneath its root.
fn read_context_file(ctx: &Path, name: &str) -> Result<Option<Vec<u8>>, BuildError> {
    let host = match copy::resolve(ctx, name, "build context") {
        Ok(mut v) if v.len() == 1 => v.remove(0).host,
        Ok(_) => return Err(BuildError::Context(format!("{name}: not a single file"))),
        Err(e) if e.starts_with("file not found") => return Ok(None),
        Err(e) => return Err(BuildError::Context(e)),
    };
    let f = std::fs::File::open(&host).map_err(|e| BuildError::io(format!("reading {name}"), e))?;
    let mut buf = Vec::new();
    f.take(MAX_DOCKERFILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| BuildError::io(format!("reading {name}"), e))?;
    if buf.len() as u64 > MAX_DOCKERFILE {
        return Err(BuildError::Context(format!(
            "{name} is larger than {MAX_DOCKERFILE} bytes"
        )));
    }
    Ok(Some(buf))
}

/// Removes what `.dockerignore` excludes from the extracted context.
fn apply_ignore(root: &Path, prefix: &str, ig: &Ignore) -> std::io::Result<()> {
    let dir = root.join(prefix);
    for ent in std::fs::read_dir(&dir)? {
        let ent = ent?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        let rel = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        let is_dir = ent.file_type()?.is_dir();
        if ig.excluded(&rel) {
            if is_dir && ig.has_exceptions() {
                // An exception may bring back something below.
                apply_ignore(root, &rel, ig)?;
            } else if is_dir {
                std::fs::remove_dir_all(ent.path())?;
            } else {
                std::fs::remove_file(ent.path())?;
            }
        } else if is_dir {
            apply_ignore(root, &rel, ig)?;
        }
    }
    Ok(())
}

struct Exec<'a> {
    b: &'a Builder,
    store: &'a Store,
    opts: &'a BuildOptions,
    work: &'a Path,
    ctx_dir: &'a Path,
    ctx_real: &'a Path,
    hashes: &'a super::context::FileHashes,
    escape: char,
    cache: Cache,
    out: &'a mut dyn FnMut(BuildEvent),
    step: usize,
    total: usize,
    seq: u64,
    cached: usize,
    used_args: BTreeSet<String>,
    meta: Vars,
    /// Final states of built stages, by index.
    built: HashMap<usize, State>,
    platform: Platform,
    /// Layers being compressed, by diff id.
    pending: Vec<(
        Digest,
        std::thread::JoinHandle<crate::Result<manifest::Descriptor>>,
    )>,
    /// Compressed layer blobs, by diff id.
    stored: HashMap<Digest, manifest::Descriptor>,
    /// Cache entries waiting for pending layers.
    deferred: Vec<(String, State)>,
}

/// Per-stage variables and flags.
struct StageCtx {
    index: usize,
    state: State,
    /// Declared ARGs and their values (None: declared without a value).
    args: BTreeMap<String, Option<String>>,
    shell: Vec<String>,
    cmd_set: bool,
}

impl StageCtx {
    fn vars(&self) -> Vars {
        let mut v: Vars = self
            .args
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
            .collect();
        // ENV wins over ARG of the same name.
        for e in self.state.env() {
            if let Some((k, val)) = e.split_once('=') {
                v.insert(k.to_string(), val.to_string());
            }
        }
        v
    }

    /// Build args in effect for RUN, as `K=V`, sorted.
    fn arg_env(&self) -> Vec<String> {
        let env_keys: BTreeSet<String> = self
            .state
            .env()
            .iter()
            .filter_map(|e| e.split('=').next().map(str::to_string))
            .collect();
        self.args
            .iter()
            .filter(|(k, _)| !env_keys.contains(*k))
            .filter_map(|(k, v)| Some(format!("{k}={}", v.as_ref()?)))
            .collect()
    }
}

fn step_err(ins: &Instruction, message: impl Into<String>) -> BuildError {
    BuildError::Step {
        line: ins.line,
        instruction: keyword(ins),
        message: message.into(),
    }
}

fn step_img(ins: &Instruction, source: crate::Error) -> BuildError {
    BuildError::StepImage {
        line: ins.line,
        instruction: keyword(ins),
        source,
    }
}

fn keyword(ins: &Instruction) -> String {
    ins.original
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

fn short(d: &Digest) -> String {
    d.hex()[..12].to_string()
}

impl Exec<'_> {
    fn say(&mut self, s: impl Into<String>) {
        if !self.opts.quiet {
            (self.out)(BuildEvent::Stream(s.into()));
        }
    }

    fn run(&mut self, df: &Dockerfile) -> Result<State, BuildError> {
        for (k, v) in platform::automatic_args(&Platform::host(), &self.platform) {
            self.meta.insert(k, v);
        }
        // Global ARGs (before the first FROM) are visible to FROM lines.
        for ins in &df.meta_args {
            let Command::Arg(list) = &ins.command else {
                continue;
            };
            for (name, default) in list {
                let value = match self.opts.build_args.get(name) {
                    Some(v) => {
                        self.used_args.insert(name.clone());
                        Some(v.clone())
                    }
                    None => match default {
                        Some(d) => Some(
                            process_word(d, &self.meta, self.escape)
                                .map_err(|e| step_err(ins, e.to_string()))?,
                        ),
                        None => None,
                    },
                };
                if let Some(v) = value {
                    self.meta.insert(name.clone(), v);
                }
            }
        }
        let target = match &self.opts.target {
            Some(t) => {
                let t = t.to_ascii_lowercase();
                df.stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(t.as_str()))
                    .ok_or_else(|| {
                        BuildError::Options(format!("target stage {t:?} could not be found"))
                    })?
            }
            None => df.stages.len() - 1,
        };
        let needed = self.needed(df, target)?;
        self.total = needed
            .iter()
            .map(|&i| 1 + df.stages[i].instructions.len())
            .sum();
        let mut last = None;
        for &i in &needed {
            let st = self.stage(df, &df.stages[i])?;
            self.built.insert(i, st.clone());
            last = Some(st);
        }
        last.ok_or_else(|| BuildError::Options("nothing to build".into()))
    }

    /// The stage a name refers to (an `AS` name or a number), if any before `before`.
    fn stage_ref(&self, df: &Dockerfile, name: &str, before: usize) -> Option<usize> {
        let lname = name.to_ascii_lowercase();
        if let Some(i) = df.stages[..before]
            .iter()
            .position(|s| s.name.as_deref() == Some(lname.as_str()))
        {
            return Some(i);
        }
        name.parse::<usize>().ok().filter(|&i| i < before)
    }

    /// The stages the target depends on, in order.
    fn needed(&self, df: &Dockerfile, target: usize) -> Result<Vec<usize>, BuildError> {
        let mut need = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if !need.insert(i) {
                continue;
            }
            let s = &df.stages[i];
            let base = process_word(&s.base, &self.meta, self.escape).unwrap_or_default();
            if let Some(j) = self.stage_ref(df, &base, i) {
                todo.push(j);
            }
            for ins in &s.instructions {
                if let Command::Copy(CopyArgs { from: Some(f), .. }) = &ins.command {
                    let f = process_word(f, &self.meta, self.escape).unwrap_or_else(|_| f.clone());
                    match self.stage_ref(df, &f, i) {
                        Some(j) => todo.push(j),
                        None if df.stages[i..].iter().any(|s| {
                            s.name.as_deref() == Some(f.to_ascii_lowercase().as_str())
                        }) =>
                        {
                            return Err(step_err(
                                ins,
                                format!("stage {f:?} is not defined before this stage"),
                            ));
                        }
                        None => {}
                    }
                }
            }
        }
        Ok(need.into_iter().collect())
    }

    fn step_header(&mut self, original: &str) {
        self.step += 1;
        let line = format!("Step {}/{} : {}\n", self.step, self.total, original);
        self.say(line);
    }

    fn stage(&mut self, df: &Dockerfile, s: &Stage) -> Result<State, BuildError> {
        self.step_header(&s.original);
        let from_ins = Instruction {
            line: s.line,
            original: s.original.clone(),
            command: Command::Maintainer(String::new()),
        };
        let base = process_word(&s.base, &self.meta, self.escape)
            .map_err(|e| step_err(&from_ins, e.to_string()))?;
        if base.is_empty() {
            return Err(step_err(
                &from_ins,
                "the base image name is empty after substitution",
            ));
        }
        // `FROM --platform` (after substitution: `$BUILDPLATFORM`), else the build's.
        let asked = match &s.platform {
            Some(p) => {
                let w = process_word(p, &self.meta, self.escape)
                    .map_err(|e| step_err(&from_ins, e.to_string()))?;
                Some(Platform::parse(&w).map_err(|_| {
                    step_err(&from_ins, format!("--platform={w}: not os/arch[/variant]"))
                })?)
            }
            None => self.opts.platform.clone(),
        };
        let explicit = asked.is_some();
        let want = asked.unwrap_or_else(|| self.platform.clone());
        let state = if base == "scratch" {
            self.say(" ---> \n");
            State::scratch(&want)
        } else if let Some(j) = self.stage_ref(df, &base, s.index) {
            let st = self
                .built
                .get(&j)
                .cloned()
                .ok_or_else(|| step_err(&from_ins, format!("stage {base} was not built")))?;
            self.say(format!(" ---> {}\n", short(&st.id())));
            st
        } else {
            let img = self
                .base_image(&base, self.opts.pull, &want, explicit)
                .map_err(|e| match e {
                    BuildError::Image(src) => step_img(&from_ins, src),
                    BuildError::Platform(m) => step_err(&from_ins, m),
                    other => other,
                })?;
            self.say(format!(" ---> {}\n", short(&img.record.config)));
            State::from_image(&img.config_bytes, img.manifest.layers.clone())
                .map_err(|e| step_err(&from_ins, e))?
        };
        let shell = {
            let sh = strings(state.rc_get("Shell"));
            if sh.is_empty() {
                DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()
            } else {
                sh
            }
        };
        let mut ctx = StageCtx {
            index: s.index,
            state,
            args: BTreeMap::new(),
            shell,
            cmd_set: false,
        };
        // ONBUILD triggers of the base run first, then leave the config.
        let triggers = strings(ctx.state.rc_get("OnBuild"));
        if !triggers.is_empty() {
            self.say(format!(
                "# Executing {} build trigger{}\n",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ));
            ctx.state.remove_rc("OnBuild");
            for t in &triggers {
                let ins = dockerfile::parse_line(t, s.line, self.escape)?;
                self.instruction(df, &mut ctx, &ins)?;
            }
        }
        for ins in &s.instructions {
            self.step_header(&ins.original);
            self.instruction(df, &mut ctx, ins)?;
        }
        Ok(ctx.state)
    }

    /// Finds (pulling when missing or asked) a base image in the store, its
    /// manifest for `want`.
    fn base_image(
        &mut self,
        name: &str,
        pull: bool,
        want: &Platform,
        explicit: bool,
    ) -> Result<crate::store::Image, BuildError> {
        let canonical = ImageRef::parse(name)?.to_string();
        let find = |store: &Store| -> Result<crate::store::Image, BuildError> {
            let found = match platform::local_image(store, name, want, explicit) {
                Err(crate::Error::ImageNotFound(_)) => {
                    platform::local_image(store, &canonical, want, explicit)?
                }
                other => other?,
            };
            found.map_err(BuildError::Platform)
        };
        let local = find(self.store);
        match (local, pull, &self.b.puller) {
            (Ok(img), false, _) | (Ok(img), true, None) => return self.ready(img),
            (Err(BuildError::Image(crate::Error::ImageNotFound(_))), _, None) => {
                return Err(BuildError::Image(crate::Error::ImageNotFound(format!(
                    "{name} (no registry to pull it from)"
                ))))
            }
            (Err(e), _, None) => return Err(e),
            (_, _, Some(p)) => {
                self.say(format!("Pulling {canonical}\n"));
                let p = p.clone();
                if explicit {
                    p.pull_platform(self.b.store(), &canonical, want)?;
                } else {
                    p.pull(self.b.store(), &canonical)?;
                }
            }
        }
        let img = find(self.store)?;
        self.ready(img)
    }

    fn ready(&self, img: crate::store::Image) -> Result<crate::store::Image, BuildError> {
        self.store.ensure_snapshots(&img)?;
        Ok(img)
    }

    fn next_dir(&mut self, what: &str) -> Result<PathBuf, BuildError> {
        self.seq += 1;
        let d = self.work.join(format!("{what}-{}", self.seq));
        std::fs::create_dir_all(&d).map_err(|e| BuildError::io("creating a step directory", e))?;
        Ok(d)
    }

    /// Snapshot directories of a state's layers, top first (unpacked from
    /// blobs when gc removed them).
    fn lowers(&self, st: &State) -> Result<Vec<PathBuf>, crate::Error> {
        let diffs = st.diff_ids();
        let chain = chain_ids(&diffs);
        if chain.len() != st.layers.len() {
            return Err(crate::Error::InvalidJson {
                what: "build state".into(),
                reason: format!("{} diff ids for {} layers", chain.len(), st.layers.len()),
            });
        }
        for (i, c) in chain.iter().enumerate() {
            if !self.store.has_snapshot(c)? {
                let blob = self.store.open_blob(&st.layers[i].digest)?;
                let parent = if i > 0 { Some(&chain[i - 1]) } else { None };
                self.store
                    .unpack_snapshot(c, parent, &diffs[i], BufReader::new(blob))?;
            }
        }
        Ok(chain
            .iter()
            .rev()
            .map(|c| {
                let p = self.store.snapshot_dir(c);
                std::path::absolute(&p).unwrap_or(p)
            })
            .collect())
    }

    /// A writable overlay of `st`'s layers in a fresh step directory.
    fn mount_rw(&mut self, st: &State) -> Result<(PathBuf, Mounted), crate::Error> {
        let dir = self.next_dir("step").map_err(|e| {
            crate::Error::io("step directory", std::io::Error::other(e.to_string()))
        })?;
        let mut lowers = self.lowers(st)?;
        for sub in ["upper", "work", "rootfs", "empty"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| crate::Error::path("creating", dir.join(sub), e))?;
        }
        if lowers.is_empty() {
            lowers.push(dir.join("empty"));
        }
        let m = mount::overlay_rw(
            &lowers,
            &dir.join("upper"),
            &dir.join("work"),
            &dir.join("rootfs"),
        )
        .map_err(|e| crate::Error::Mount {
            target: dir.join("rootfs"),
            source: e,
        })?;
        Ok((dir, m))
    }

    /// A read-only view of a state's tree (COPY --from).
    fn mount_ro(&mut self, st: &State) -> Result<(PathBuf, Option<Mounted>), crate::Error> {
        let dir = self.next_dir("from").map_err(|e| {
            crate::Error::io("step directory", std::io::Error::other(e.to_string()))
        })?;
        let lowers = self.lowers(st)?;
        match lowers.len() {
            0 => Ok((dir, None)),
            1 => Ok((lowers[0].clone(), None)),
            _ => {
                let target = dir.join("rootfs");
                std::fs::create_dir_all(&target)
                    .map_err(|e| crate::Error::path("creating", &target, e))?;
                let m = mount::overlay_ro(&lowers, &target).map_err(|e| crate::Error::Mount {
                    target: target.clone(),
                    source: e,
                })?;
                Ok((target, Some(m)))
            }
        }
    }

    /// Turns a step's upper directory into a layer on top of `st`. A gzip
    /// blob is compressed on another thread while the next steps run: the
    /// state carries a pending descriptor until [`Exec::settle_layers`].
    fn commit(&mut self, st: &mut State, dir: &Path) -> Result<(), crate::Error> {
        let upper = dir.join("upper");
        let (diff_id, content_bytes, descriptor) = if self.opts.compress_layers {
            let tar = layer::write_tar(&upper, &dir.join("layer.tar"))?;
            let diff_id = tar.diff_id.clone();
            let bytes = tar.content_bytes;
            let store = self.b.store.clone();
            let job = std::thread::spawn(move || layer::store_gzip(&store, &tar));
            self.pending.push((diff_id.clone(), job));
            let d = crate::manifest::Descriptor {
                media_type: PENDING_LAYER.to_string(),
                digest: diff_id.clone(),
                size: 0,
                platform: None,
                annotations: None,
            };
            (diff_id, bytes, d)
        } else {
            let l = layer::commit_layer(self.store, &upper, false)?;
            (l.diff_id, l.content_bytes, l.descriptor)
        };
        let mut diffs = st.diff_ids();
        let parent = chain_ids(&diffs).last().cloned();
        diffs.push(diff_id.clone());
        let chain = chain_ids(&diffs).pop().unwrap_or_else(|| diff_id.clone());
        self.store
            .adopt_snapshot(&upper, &chain, parent.as_ref(), &diff_id, content_bytes)?;
        st.push_layer(descriptor, &diff_id);
        Ok(())
    }

    /// Waits for the layers being compressed, then records the cache entries
    /// that waited for them. Runs when the build ends either way, so the
    /// steps that succeeded before a failing one are cached.
    fn settle_layers(&mut self) -> Result<(), BuildError> {
        let mut first_err = None;
        for (diff_id, job) in std::mem::take(&mut self.pending) {
            match job.join() {
                Ok(Ok(d)) => {
                    self.stored.insert(diff_id, d);
                }
                Ok(Err(e)) => {
                    first_err.get_or_insert(BuildError::Image(e));
                }
                Err(_) => {
                    first_err.get_or_insert(BuildError::io(
                        "compressing a layer",
                        std::io::Error::other("the compressing thread panicked"),
                    ));
                }
            }
        }
        for (key, mut st) in std::mem::take(&mut self.deferred) {
            if self.resolve_layers(&mut st) {
                self.cache.put(&key, &st);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Replaces pending descriptors by the stored blobs'; false when one of
    /// them failed.
    fn resolve_layers(&self, st: &mut State) -> bool {
        let diffs = st.diff_ids();
        for (i, l) in st.layers.iter_mut().enumerate() {
            if l.media_type != PENDING_LAYER {
                continue;
            }
            match diffs.get(i).and_then(|d| self.stored.get(d)) {
                Some(d) => *l = d.clone(),
                None => return false,
            }
        }
        true
    }

    /// Runs one instruction through the cache: `key_text` identifies what it
    /// does after substitution; `apply` changes the state when it misses.
    fn cached_step(
        &mut self,
        ctx: &mut StageCtx,
        key_text: &str,
        apply: &mut dyn FnMut(&mut Self, &mut State) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        let key = cache::key(&ctx.state.id(), key_text);
        if !self.opts.no_cache {
            if let Some(hit) = self.cache.get(self.store, &key) {
                self.cached += 1;
                let line = format!(" ---> Using cache\n ---> {}\n", short(&hit.id()));
                self.say(line);
                ctx.state = hit;
                return Ok(());
            }
        }
        let mut st = ctx.state.clone();
        apply(self, &mut st)?;
        if st.has_pending() {
            // Recorded once its layers are stored (`settle_layers`).
            self.deferred.push((key, st.clone()));
        } else {
            self.cache.put(&key, &st);
        }
        let line = format!(" ---> {}\n", short(&st.id()));
        self.say(line);
        ctx.state = st;
        Ok(())
    }

    /// A metadata-only step: config change plus an empty-layer history entry.
    fn meta_step(
        &mut self,
        ctx: &mut StageCtx,
        text: &str,
        change: &mut dyn FnMut(&mut State),
    ) -> Result<(), BuildError> {
        let created_by = format!("{} #(nop)  {}", ctx.shell.join(" "), text);
        self.cached_step(ctx, &created_by, &mut |_, st| {
            change(st);
            st.history(&created_by, true);
            Ok(())
        })
    }

    fn instruction(
        &mut self,
        df: &Dockerfile,
        ctx: &mut StageCtx,
        ins: &Instruction,
    ) -> Result<(), BuildError> {
        let esc = self.escape;
        let vars = ctx.vars();
        let word = |w: &str| process_word(w, &vars, esc).map_err(|e| step_err(ins, e.to_string()));
        match &ins.command {
            Command::Env(pairs) => {
                let mut kv = Vec::new();
                for (k, v) in pairs {
                    kv.push((word(k)?, word(v)?));
                }
                let text = format!(
                    "ENV {}",
                    kv.iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
                self.meta_step(ctx, &text, &mut |st| {
                    for (k, v) in &kv {
                        st.set_env(k, v);
                    }
                })
            }
            Command::Label(pairs) => {
                let mut kv = Vec::new();
                for (k, v) in pairs {
                    kv.push((word(k)?, word(v)?));
                }
                self.labels_step(ctx, kv)
            }
            Command::Arg(list) => {
                let mut parts = Vec::new();
                for (name, default) in list {
                    let value = match self.opts.build_args.get(name) {
                        Some(v) => {
                            self.used_args.insert(name.clone());
                            Some(v.clone())
                        }
                        None => match default {
                            Some(d) => Some(word(d)?),
                            None => self.meta.get(name).cloned(),
                        },
                    };
                    parts.push(match default {
                        Some(d) => format!("{name}={d}"),
                        None => name.clone(),
                    });
                    ctx.args.insert(name.clone(), value);
                }
                // The values take part in later RUN keys, not in this one.
                let text = format!("ARG {}", parts.join(" "));
                self.meta_step(ctx, &text, &mut |_| {})
            }
            Command::Expose(words) => {
                let mut ports = Vec::new();
                for w in words {
                    for p in
                        process_words(w, &vars, esc).map_err(|e| step_err(ins, e.to_string()))?
                    {
                        ports.extend(expand_ports(&p).map_err(|e| step_err(ins, e))?);
                    }
                }
                let text = format!("EXPOSE {}", ports.join(" "));
                self.meta_step(ctx, &text, &mut |st| {
                    let mut map = st
                        .rc_get("ExposedPorts")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    for p in &ports {
                        map.insert(p.clone(), json!({}));
                    }
                    st.set_rc("ExposedPorts", Value::Object(map));
                })
            }
            Command::Volume(words) => {
                let mut vols = Vec::new();
                for w in words {
                    let v = word(w)?;
                    if v.trim().is_empty() {
                        return Err(step_err(ins, "VOLUME specified can not be an empty string"));
                    }
                    vols.push(v);
                }
                let text = format!("VOLUME [{}]", vols.join(" "));
                self.meta_step(ctx, &text, &mut |st| {
                    let mut map = st
                        .rc_get("Volumes")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    for v in &vols {
                        map.insert(v.clone(), json!({}));
                    }
                    st.set_rc("Volumes", Value::Object(map));
                })
            }
            Command::User(u) => {
                let u = word(u)?;
                let text = format!("USER {u}");
                self.meta_step(ctx, &text, &mut |st| st.set_rc("User", json!(u)))
            }
            Command::Workdir(w) => {
                let w = word(w)?;
                let cur = ctx
                    .state
                    .rc_get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .to_string();
                let joined = if w.starts_with('/') {
                    w.clone()
                } else {
                    format!("{cur}/{w}")
                };
                let abs = format!("/{}", clean(&joined));
                let text = format!("WORKDIR {abs}");
                self.meta_step(ctx, &text, &mut |st| st.set_rc("WorkingDir", json!(abs)))
            }
            Command::StopSignal(s) => {
                let s = word(s)?;
                config_to_spec::parse_signal(&s)
                    .map_err(|_| step_err(ins, format!("invalid signal {s:?}")))?;
                let text = format!("STOPSIGNAL {s}");
                self.meta_step(ctx, &text, &mut |st| st.set_rc("StopSignal", json!(s)))
            }
            Command::Healthcheck(h) => {
                let v = health_json(h.as_ref());
                let text = format!("HEALTHCHECK {v}");
                self.meta_step(ctx, &text, &mut |st| st.set_rc("Healthcheck", v.clone()))
            }
            Command::Shell(sh) => {
                ctx.shell = sh.clone();
                let v = json!(sh);
                let text = format!("SHELL {v}");
                self.meta_step(ctx, &text, &mut |st| st.set_rc("Shell", v.clone()))
            }
            Command::Cmd(f) => {
                let args = self.command_args(ctx, f);
                ctx.cmd_set = true;
                let text = format!("CMD {}", json!(args));
                self.meta_step(ctx, &text, &mut |st| st.set_rc("Cmd", json!(args)))
            }
            Command::Entrypoint(f) => {
                let args = self.command_args(ctx, f);
                let reset_cmd = !ctx.cmd_set;
                let text = format!("ENTRYPOINT {}", json!(args));
                self.meta_step(ctx, &text, &mut |st| {
                    st.set_rc("Entrypoint", json!(args));
                    if reset_cmd {
                        st.set_rc("Cmd", Value::Null);
                    }
                })
            }
            Command::Onbuild(t) => {
                let (k, rest) = t.split_once(char::is_whitespace).unwrap_or((t, ""));
                let trigger = format!("{} {}", k.to_ascii_uppercase(), rest.trim());
                let text = format!("ONBUILD {trigger}");
                self.meta_step(ctx, &text, &mut |st| {
                    let mut v = strings(st.rc_get("OnBuild"));
                    v.push(trigger.clone());
                    st.set_rc("OnBuild", json!(v));
                })
            }
            Command::Maintainer(m) => {
                let text = format!("MAINTAINER {m}");
                self.meta_step(ctx, &text, &mut |st| st.config["author"] = json!(m))
            }
            Command::Run(r) => self.run_step(ctx, ins, r),
            Command::Copy(c) => self.copy_step(df, ctx, ins, c, false),
            Command::Add(c) => self.copy_step(df, ctx, ins, c, true),
        }
    }

    fn labels_step(
        &mut self,
        ctx: &mut StageCtx,
        kv: Vec<(String, String)>,
    ) -> Result<(), BuildError> {
        let text = format!(
            "LABEL {}",
            kv.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        self.meta_step(ctx, &text, &mut |st| {
            let mut map = st
                .rc_get("Labels")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (k, v) in &kv {
                map.insert(k.clone(), json!(v));
            }
            st.set_rc("Labels", Value::Object(map));
        })
    }

    fn command_args(&self, ctx: &StageCtx, f: &ShellOrExec) -> Vec<String> {
        match f {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(s) => ctx
                .shell
                .iter()
                .cloned()
                .chain(std::iter::once(s.clone()))
                .collect(),
        }
    }

    fn run_step(
        &mut self,
        ctx: &mut StageCtx,
        ins: &Instruction,
        r: &RunArgs,
    ) -> Result<(), BuildError> {
        let args: Vec<String> = match &r.cmd {
            ShellOrExec::Exec(v) => v.clone(),
            ShellOrExec::Shell(body) if !r.heredocs.is_empty() => {
                let script = if r.heredocs.len() == 1
                    && body.trim().starts_with("<<")
                    && !body.trim().contains(char::is_whitespace)
                {
                    // `RUN <<EOF`: the heredoc is the script.
                    r.heredocs[0].content.clone()
                } else {
                    let mut s = body.clone();
                    s.push('\n');
                    for h in &r.heredocs {
                        s.push_str(&h.content);
                        s.push_str(&h.name);
                        s.push('\n');
                    }
                    s
                };
                ctx.shell
                    .iter()
                    .cloned()
                    .chain(std::iter::once(script))
                    .collect()
            }
            ShellOrExec::Shell(body) => ctx
                .shell
                .iter()
                .cloned()
                .chain(std::iter::once(body.clone()))
                .collect(),
        };
        if args.is_empty() {
            return Err(step_err(ins, "RUN has an empty command"));
        }
        let arg_env = ctx.arg_env();
        let mut created_by = args.join(" ");
        if !arg_env.is_empty() {
            created_by = format!("|{} {} {created_by}", arg_env.len(), arg_env.join(" "));
        }
        let mut env = ctx.state.env();
        env.extend(arg_env.iter().cloned());
        for p in PREDEFINED_ARGS {
            if let Some(v) = self.opts.build_args.get(*p) {
                self.used_args.insert(p.to_string());
                if !ctx.args.contains_key(*p) {
                    env.push(format!("{p}={v}"));
                }
            }
        }
        let net_mode = match r.network.as_deref() {
            Some("none") => NetworkMode::None,
            Some("host") => NetworkMode::Host,
            _ => self.opts.network,
        };
        let user = ctx
            .state
            .rc_get("User")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let cwd = ctx
            .state
            .rc_get("WorkingDir")
            .and_then(Value::as_str)
            .unwrap_or("/")
            .to_string();
        let key = format!(
            "RUN {}",
            json!({"args": args, "args_env": arg_env, "user": user, "cwd": cwd, "network": format!("{net_mode:?}")})
        );
        let ins = ins.clone();
        self.cached_step(ctx, &key, &mut |ex, st| {
            ex.execute_run(st, &ins, &args, &env, &user, &cwd, net_mode)?;
            st.history(&created_by, false);
            Ok(())
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn execute_run(
        &mut self,
        st: &mut State,
        ins: &Instruction,
        args: &[String],
        env: &[String],
        user: &str,
        cwd: &str,
        net_mode: NetworkMode,
    ) -> Result<(), BuildError> {
        let (dir, m) = self.mount_rw(st).map_err(|e| step_img(ins, e))?;
        let rootfs = dir.join("rootfs");
        // A Docker-like 64-hex container id; the build shows its first 12.
        let hex_id = Digest::of(unique_name("kos-build").as_bytes())
            .hex()
            .to_string();
        let id = format!("kos-build-{hex_id}");
        let rc = config_to_spec::runtime_config(
            &ImageConfig::default(),
            &rootfs,
            &Overrides {
                entrypoint: Some(args.to_vec()),
                cmd: Some(Vec::new()),
                env: env.to_vec(),
                user: Some(user.to_string()),
                working_dir: Some(cwd.to_string()),
            },
        )
        .map_err(|e| step_img(ins, e))?;
        let network = self.b.network.clone();
        let (net, attached) = match net_mode {
            NetworkMode::None => (Net::None, false),
            NetworkMode::Host => (Net::Host, false),
            NetworkMode::Default => match &network {
                Some(n) => {
                    let a = n.attach(&id).map_err(|e| {
                        step_err(
                            ins,
                            format!("connecting the build container to the network: {e}"),
                        )
                    })?;
                    (
                        Net::Netns {
                            path: a.netns,
                            resolv_conf: a.resolv_conf,
                            hosts: a.hosts,
                        },
                        true,
                    )
                }
                None => {
                    info!("no bridge network for build containers: RUN uses the host's network");
                    (Net::Host, false)
                }
            },
        };
        struct Detach<'a>(Option<&'a dyn super::BuildNetwork>, &'a str);
        impl Drop for Detach<'_> {
            fn drop(&mut self) {
                if let Some(n) = self.0 {
                    n.detach(self.1);
                }
            }
        }
        let _detach = Detach(if attached { network.as_deref() } else { None }, &id);
        // Mount points the runtime creates, if the image lacks them, are not part of the step.
        let root = Root::open(&rootfs).map_err(|e| BuildError::io("opening the step root", e))?;
        let missing: Vec<&str> = run::mount_points(&net)
            .into_iter()
            .filter(|p| root.open_in(Path::new(p), libc::O_PATH).is_err())
            .collect();
        drop(root);
        let spec = run::Spec {
            id: &id,
            args: rc.args,
            env: rc.env,
            cwd: rc.cwd,
            uid: rc.uid,
            gid: rc.gid,
            additional_gids: rc.additional_gids,
            rootfs: &rootfs,
            net,
            cgroup_parent: &self.b.cgroup_parent,
        };
        let short_id = hex_id[..12].to_string();
        self.say(format!(" ---> Running in {short_id}\n"));
        let quiet = self.opts.quiet;
        let out = &mut self.out;
        let outcome = run::run(
            &self.b.kosrun,
            &dir.join("state"),
            &dir.join("bundle"),
            &spec,
            &mut |l| {
                if !quiet {
                    (out)(BuildEvent::Stream(l.to_string()));
                }
            },
        )
        .map_err(|e| {
            step_err(
                ins,
                format!("running the step with {}: {e}", self.b.kosrun.display()),
            )
        })?;
        m.unmount()
            .map_err(|e| step_err(ins, format!("unmounting the step's rootfs: {e}")))?;
        if outcome.code != 0 {
            return Err(BuildError::RunFailed {
                line: ins.line,
                command: json!(args).to_string(),
                code: outcome.code,
                output: outcome.tail,
            });
        }
        self.say(format!("Removing intermediate container {short_id}\n"));
        for p in missing {
            remove_if_empty(&dir.join("upper").join(p));
        }
        self.commit(st, &dir).map_err(|e| step_img(ins, e))
    }

    fn copy_step(
        &mut self,
        df: &Dockerfile,
        ctx: &mut StageCtx,
        ins: &Instruction,
        c: &CopyArgs,
        add: bool,
    ) -> Result<(), BuildError> {
        let esc = self.escape;
        let vars = ctx.vars();
        let word = |w: &str| process_word(w, &vars, esc).map_err(|e| step_err(ins, e.to_string()));
        // Where the sources come from.
        let from = match &c.from {
            None => None,
            Some(f) => {
                let f = word(f)?;
                match self.stage_ref(df, &f, ctx.index) {
                    Some(j) => Some((
                        f,
                        self.built
                            .get(&j)
                            .cloned()
                            .ok_or_else(|| step_err(ins, format!("stage {j} was not built")))?,
                    )),
                    None => {
                        if f.eq_ignore_ascii_case(
                            df.stages[ctx.index].name.as_deref().unwrap_or("\u{0}"),
                        ) {
                            return Err(step_err(
                                ins,
                                format!("COPY --from={f} refers to its own stage"),
                            ));
                        }
                        let want = self.platform.clone();
                        let explicit = self.opts.platform.is_some();
                        let img =
                            self.base_image(&f, false, &want, explicit)
                                .map_err(|e| match e {
                                    BuildError::Image(crate::Error::ImageNotFound(_)) => step_err(
                                        ins,
                                        format!("no build stage or image named {f:?}"),
                                    ),
                                    BuildError::Image(src) => step_img(ins, src),
                                    BuildError::Platform(m) => step_err(ins, m),
                                    other => other,
                                })?;
                        let st = State::from_image(&img.config_bytes, img.manifest.layers.clone())
                            .map_err(|e| step_err(ins, e))?;
                        Some((f, st))
                    }
                }
            }
        };
        let (src_root, _src_mount, what) = match &from {
            None => (
                self.ctx_dir.to_path_buf(),
                None,
                "build context".to_string(),
            ),
            Some((name, st)) => {
                let (p, m) = self.mount_ro(st).map_err(|e| step_img(ins, e))?;
                (p, m, format!("stage or image {name}"))
            }
        };
        // Sources: files, directories, globs and heredocs.
        let mut heredocs = c.heredocs.iter();
        let mut sources: Vec<Source> = Vec::new();
        let mut inline: Vec<(String, Vec<u8>)> = Vec::new();
        let mut globbed = false;
        for raw in &c.sources {
            if raw.starts_with("<<") && !c.heredocs.is_empty() {
                let h = heredocs
                    .next()
                    .ok_or_else(|| step_err(ins, "more heredoc sources than heredocs"))?;
                let content = if h.expand {
                    super::lex::process_heredoc(&h.content, &vars, esc)
                        .map_err(|e| step_err(ins, e.to_string()))?
                } else {
                    h.content.clone()
                };
                inline.push((h.name.clone(), content.into_bytes()));
                continue;
            }
            let w = word(raw)?;
            if add && (w.contains("://") || w.starts_with("git@")) {
                return Err(step_err(ins, format!("ADD from a remote URL ({w}) is not supported: download it in a RUN step or COPY it from the context")));
            }
            globbed |= super::ignore::has_meta(&clean(&w));
            sources.extend(copy::resolve(&src_root, &w, &what).map_err(|e| step_err(ins, e))?);
        }
        let dest_word = word(&c.dest)?;
        let cwd = ctx
            .state
            .rc_get("WorkingDir")
            .and_then(Value::as_str)
            .unwrap_or("/")
            .to_string();
        let dest = if dest_word.starts_with('/') {
            dest_word.clone()
        } else {
            let mut d = format!("{}/{}", cwd.trim_end_matches('/'), dest_word);
            if (dest_word.ends_with('/') || dest_word == ".") && !d.ends_with('/') {
                d.push('/');
            }
            d
        };
        let many = sources.len() + inline.len() > 1 || globbed;
        if many && !dest.ends_with('/') {
            return Err(step_err(ins, format!("when using {} with more than one source file, the destination must be a directory and end with a /", keyword(ins))));
        }
        let chown = c.chown.as_deref().map(word).transpose()?;
        let chmod = match c.chmod.as_deref().map(word).transpose()? {
            None => None,
            Some(m) => Some(
                u32::from_str_radix(&m, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| step_err(ins, format!("invalid --chmod={m}: an octal mode")))?,
            ),
        };
        let hash = copy::hash_sources(
            &sources,
            from.is_none().then_some((self.ctx_real, self.hashes)),
        )
        .map_err(|e| step_err(ins, format!("reading sources: {e}")))?;
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        sha2::Digest::update(&mut h, hash.as_bytes());
        for (n, b) in &inline {
            sha2::Digest::update(&mut h, n.as_bytes());
            sha2::Digest::update(&mut h, b);
        }
        let hash = hex::encode(sha2::Digest::finalize(h));
        let kind = if sources.len() == 1 && inline.is_empty() && sources[0].host.is_file() {
            "file"
        } else {
            "dir"
        };
        let mut flags = String::new();
        if let Some((f, _)) = &from {
            flags.push_str(&format!("--from={f} "));
        }
        if let Some(o) = &chown {
            flags.push_str(&format!("--chown={o} "));
        }
        if let Some(m) = chmod {
            flags.push_str(&format!("--chmod={m:o} "));
        }
        let name = if add { "ADD" } else { "COPY" };
        let created_by = format!(
            "{} #(nop) {name} {flags}{kind}:{hash} in {dest} ",
            ctx.shell.join(" ")
        );
        let ins = ins.clone();
        self.cached_step(ctx, &created_by, &mut |ex, st| {
            ex.execute_copy(
                st,
                &ins,
                &sources,
                &inline,
                &dest,
                chown.as_deref(),
                chmod,
                many,
                add,
            )?;
            st.history(&created_by, false);
            Ok(())
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn execute_copy(
        &mut self,
        st: &mut State,
        ins: &Instruction,
        sources: &[Source],
        inline: &[(String, Vec<u8>)],
        dest: &str,
        chown: Option<&str>,
        chmod: Option<u32>,
        many: bool,
        add: bool,
    ) -> Result<(), BuildError> {
        let (dir, m) = self.mount_rw(st).map_err(|e| step_img(ins, e))?;
        let rootfs = dir.join("rootfs");
        let root = Root::open(&rootfs).map_err(|e| BuildError::io("opening the step root", e))?;
        let (uid, gid) = match chown {
            None => (0, 0),
            Some(spec) => copy::resolve_owner(&root, spec).map_err(|e| step_err(ins, e))?,
        };
        let attrs = Attrs { uid, gid, chmod };
        let fail =
            |e: std::io::Error, what: &str| step_err(ins, format!("copying {what} to {dest}: {e}"));
        for s in sources {
            let packed = if add && s.host.is_file() {
                archive::detect(&s.host).map_err(|e| fail(e, &s.rel))?
            } else {
                None
            };
            if let Some(kind) = packed {
                // A local archive is unpacked at the destination.
                let fd = copy::mkdir_in(&root, dest).map_err(|e| fail(e, &s.rel))?;
                let tar = archive::open(&s.host, kind).map_err(|e| fail(e, &s.rel))?;
                unpack::unpack_layer(
                    tar,
                    &copy::fd_path(&fd),
                    &UnpackOptions {
                        mode: Mode::Apply,
                        limits: self.store.limits,
                        expected_diff_id: None,
                    },
                )
                .map_err(|e| step_err(ins, format!("extracting {}: {e}", s.rel)))?;
                continue;
            }
            let is_dir = s.host.is_dir();
            let d = copy::dest_for(&root, dest, is_dir, many).map_err(|e| fail(e, &s.rel))?;
            match d {
                Dest::Into(fd) if is_dir => {
                    let mut names: Vec<_> = std::fs::read_dir(&s.host)
                        .and_then(|rd| {
                            rd.map(|e| e.map(|e| e.file_name()))
                                .collect::<std::io::Result<Vec<_>>>()
                        })
                        .map_err(|e| fail(e, &s.rel))?;
                    names.sort();
                    let items: Vec<_> = names
                        .into_iter()
                        .map(|n| (s.host.join(&n), n, false))
                        .collect();
                    copy::copy_entries(&items, fd.as_raw_fd(), &attrs)
                        .map_err(|e| fail(e, &s.rel))?;
                }
                Dest::Into(fd) => {
                    let base = s
                        .host
                        .file_name()
                        .map(|n| n.to_os_string())
                        .unwrap_or_default();
                    let base = Path::new(&s.rel)
                        .file_name()
                        .map(|n| n.to_os_string())
                        .unwrap_or(base);
                    copy::copy_entries(&[(s.host.clone(), base, true)], fd.as_raw_fd(), &attrs)
                        .map_err(|e| fail(e, &s.rel))?;
                }
                Dest::As(fd, name) => {
                    copy::copy_entries(&[(s.host.clone(), name, true)], fd.as_raw_fd(), &attrs)
                        .map_err(|e| fail(e, &s.rel))?;
                }
            }
        }
        for (name, content) in inline {
            let d = copy::dest_for(&root, dest, false, many).map_err(|e| fail(e, name))?;
            let (fd, n) = match d {
                Dest::Into(fd) => (fd, std::ffi::OsString::from(name)),
                Dest::As(fd, n) => (fd, n),
            };
            copy::write_file(fd.as_raw_fd(), &n, content, &attrs).map_err(|e| fail(e, name))?;
        }
        drop(root);
        m.unmount()
            .map_err(|e| step_err(ins, format!("unmounting the step's rootfs: {e}")))?;
        self.commit(st, &dir).map_err(|e| step_img(ins, e))
    }

    /// Writes the final image, reports it and tags it.
    fn finish(mut self, state: State, tags: Vec<String>) -> Result<BuildResult, BuildError> {
        let mut state = state;
        if !self.opts.labels.is_empty() {
            let mut ctx = StageCtx {
                index: 0,
                state,
                args: BTreeMap::new(),
                shell: DEFAULT_SHELL.iter().map(|s| s.to_string()).collect(),
                cmd_set: false,
            };
            let kv: Vec<(String, String)> = self
                .opts
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            self.labels_step(&mut ctx, kv)?;
            state = ctx.state;
        }
        let unused: Vec<&String> = self
            .opts
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
            .collect();
        if !unused.is_empty() {
            let names: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            self.say(format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                names.join(" ")
            ));
        }
        self.settle_layers()?;
        if !self.resolve_layers(&mut state) {
            return Err(BuildError::io(
                "writing the image",
                std::io::Error::other("a layer of the image was not stored"),
            ));
        }
        let config_bytes = serde_json::to_vec(&state.config)
            .map_err(|e| BuildError::io("encoding the image config", std::io::Error::other(e)))?;
        let config_digest = self.store.put_blob(&config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType": manifest::OCI_CONFIG, "digest": config_digest.to_string(), "size": config_bytes.len()},
            "layers": state.layers,
        });
        let body = serde_json::to_vec(&manifest)
            .map_err(|e| BuildError::io("encoding the manifest", std::io::Error::other(e)))?;
        let md = Digest::of(&body);
        self.store
            .put_manifest(&md, manifest::OCI_MANIFEST, &body)?;
        (self.out)(BuildEvent::Aux {
            id: config_digest.to_string(),
        });
        if self.opts.quiet {
            (self.out)(BuildEvent::Stream(format!("{config_digest}\n")));
        }
        self.say(format!("Successfully built {}\n", short(&config_digest)));
        let displaced = dangling::displaced(self.store, &tags)?;
        for t in &tags {
            self.store.tag_image(t, &md, &md)?;
            self.say(format!("Successfully tagged {}\n", familiar(t)));
        }
        dangling::settle(
            self.store,
            &displaced,
            &md,
            &config_digest,
            !tags.is_empty(),
        )?;
        Ok(BuildResult {
            image_id: config_digest,
            manifest_digest: md,
            tags,
            steps: self.step,
            cached_steps: self.cached,
        })
    }
}

/// The name Docker prints (`docker.io/library/app:1` -> `app:1`).
fn familiar(name: &str) -> &str {
    name.strip_prefix("docker.io/library/")
        .or_else(|| name.strip_prefix("docker.io/"))
        .unwrap_or(name)
}

fn remove_if_empty(p: &Path) {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::remove_dir(p);
    } else if meta.is_file() && meta.len() == 0 {
        let _ = std::fs::remove_file(p);
    }
}

/// `80`, `80/udp`, `8000-8002/tcp` -> `80/tcp`, ...
fn expand_ports(p: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid protocol in EXPOSE {p}: tcp, udp or sctp"));
    }
    let bad = || format!("invalid port in EXPOSE: {p}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let n = ports.parse::<u16>().map_err(|_| bad())?;
            (n, n)
        }
    };
    if lo > hi || hi - lo > 10_000 {
        return Err(bad());
    }
    Ok((lo..=hi).map(|n| format!("{n}/{proto}")).collect())
}

fn health_json(h: Option<&Health>) -> Value {
    let Some(h) = h else {
        return json!({"Test": ["NONE"]});
    };
    let mut v = json!({"Test": h.test});
    for (k, val) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
        ("Retries", h.retries),
    ] {
        if let Some(n) = val {
            v[k] = json!(n);
        }
    }
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(expand_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(expand_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            expand_ports("8000-8002/tcp").unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(expand_ports("x").is_err());
        assert!(expand_ports("80/icmp").is_err());
        assert!(expand_ports("9-1").is_err());
    }

    #[test]
    fn familiar_names() {
        assert_eq!(familiar("docker.io/library/app:1"), "app:1");
        assert_eq!(familiar("docker.io/me/app:1"), "me/app:1");
        assert_eq!(familiar("127.0.0.1:5000/app:1"), "127.0.0.1:5000/app:1");
    }
}
