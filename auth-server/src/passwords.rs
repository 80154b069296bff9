//! User passwords: argon2id with the OWASP parameters (m = 19456 KiB, t = 2, p = 1), hashed and
//! verified on a [`PasswordPool`] of dedicated threads off the async runtime. Each thread owns one
//! block buffer of m_cost KiB for its whole life, so the memory argon2 needs is bounded by
//! threads × 19 MiB whatever the load (no per-call allocation for the allocator to keep; only a
//! stored hash with a larger m_cost, which this crate never creates, gets memory of its own for
//! its verification). The pool counts what it allocates and computes ([`Argon2Usage`]). When the
//! threads and the queue are full the caller gets [`PasswordError::Saturated`] at once (the HTTP
//! layer answers 503), so a login flood cannot queue without bound or starve token issuance.
//! Every password is prepared with the RFC 8265 OpaqueString profile ([`prepare_password`])
//! before it is hashed or verified.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::oneshot;

use crate::identifiers::{IdentifierError, normalize_username, prepare_password};

/// Shortest password `users create` and `users reset-password` accept (NIST SP 800-63B).
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted anywhere, so hashing cost stays bounded.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Passwords refused outright: the most common ones of at least eight characters.
const COMMON_PASSWORDS: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "password!",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "12345678",
    "123456789",
    "1234567890",
    "12345678910",
    "0123456789",
    "87654321",
    "11111111",
    "00000000",
    "88888888",
    "12341234",
    "11223344",
    "123123123",
    "123321123",
    "qwertyui",
    "qwertyuiop",
    "qwerty123",
    "qwerty12",
    "1q2w3e4r",
    "1q2w3e4r5t",
    "q1w2e3r4",
    "1qaz2wsx",
    "zaq12wsx",
    "asdfghjk",
    "asdfghjkl",
    "asdf1234",
    "zxcvbnm1",
    "abcd1234",
    "abc12345",
    "abcdefgh",
    "iloveyou",
    "iloveyou1",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "welcome1",
    "welcome123",
    "letmein1",
    "letmein!",
    "trustno1",
    "superman",
    "starwars",
    "whatever",
    "computer",
    "michelle",
    "jennifer",
    "corvette",
    "mercedes",
    "liverpool",
    "chelsea1",
    "arsenal1",
    "mustang1",
    "shadow12",
    "master12",
    "dragon12",
    "monkey12",
    "charlie1",
    "jordan23",
    "access14",
    "changeme",
    "changeme1",
    "administrator",
    "admin123",
    "admin1234",
    "root1234",
    "test1234",
    "testtest",
    "guest123",
    "default1",
    "secret12",
    "secret123",
    "summer2024",
    "winter2024",
    "spring2024",
    "autumn2024",
    "summer2025",
    "winter2025",
    "spring2025",
    "summer2026",
    "winter2026",
    "spring2026",
    "qazwsxedc",
    "google123",
    "samsung1",
    "pokemon1",
    "blink182",
    "freedom1",
    "hello123",
    "lovely12",
    "loveme12",
    "ashley12",
    "daniel12",
    "matthew1",
    "jessica1",
    "123qweasd",
];

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("the password hashing pool is saturated")]
    Saturated,
    #[error("password must be at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LEN} bytes")]
    TooLong,
    #[error("password is too common")]
    TooCommon,
    #[error("{0}")]
    Invalid(IdentifierError),
    #[error("password hashing failed")]
    Hash,
    #[error("starting the password hashing threads failed")]
    Threads(#[source] std::io::Error),
}

/// The OWASP argon2id parameters new hashes get (OWASP Password Storage Cheat Sheet, argon2id:
/// m = 19 MiB, t = 2, p = 1; RFC 9106 §4 for their meaning).
fn owasp_params() -> Result<Params, PasswordError> {
    Params::new(19_456, 2, 1, None).map_err(|_| PasswordError::Hash)
}

/// Checks a new password against the policy: a valid RFC 8265 OpaqueString (§4.2) whose
/// prepared form has the length bounds, is not on the common-password list and is not the
/// user name.
pub fn check_policy(password: &str, email: &str) -> Result<(), PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::TooShort);
    }
    let prepared = prepare_password(password).map_err(PasswordError::Invalid)?;
    if prepared.chars().count() < MIN_PASSWORD_LEN {
        return Err(PasswordError::TooShort);
    }
    if prepared.len() > MAX_PASSWORD_LEN {
        return Err(PasswordError::TooLong);
    }
    let lower = prepared.to_lowercase();
    let username = normalize_username(email).unwrap_or_else(|_| email.trim().to_lowercase());
    if COMMON_PASSWORDS.contains(&lower.as_str()) || lower == username {
        return Err(PasswordError::TooCommon);
    }
    Ok(())
}

/// Hashes the RFC 8265 OpaqueString form of a password into a PHC string, allocating the 19 MiB of argon2 blocks for this one
/// call (the CLI's path). CPU-heavy: call it off the async runtime. A server hashes on its
/// [`PasswordPool`] instead ([`PasswordPool::hash`]), which reuses its threads' buffers.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let prepared = prepare_password(password).map_err(PasswordError::Invalid)?;
    let mut memory = vec![Block::default(); owasp_params()?.block_count()];
    hash_with_memory(prepared.as_bytes(), &mut memory)
}

/// Hashes `password` with a fresh 16-byte salt (RFC 9106 §3.1 recommends 128 bits) into the
/// caller's blocks; the PHC string is what `argon2`'s own `PasswordHasher` would produce.
fn hash_with_memory(password: &[u8], memory: &mut [Block]) -> Result<String, PasswordError> {
    let params = owasp_params()?;
    let mut salt = [0u8; 16];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| PasswordError::Hash)?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let memory = memory
        .get_mut(..params.block_count())
        .ok_or(PasswordError::Hash)?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password, &salt, &mut out, memory)
        .map_err(|_| PasswordError::Hash)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| PasswordError::Hash)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|_| PasswordError::Hash)?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|_| PasswordError::Hash)?),
    };
    Ok(phc.to_string())
}

/// Verifies `password` against a PHC string by recomputing the hash with the string's own
/// algorithm, version, parameters and salt (PHC string format; RFC 9106 §3.1 inputs) in the
/// thread's `memory`, and comparing the outputs in constant time (`Output`'s `PartialEq`).
fn verify_with_memory(password: &[u8], phc: &str, memory: &mut ThreadMemory) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version {
        Some(version) => Version::try_from(version),
        None => Ok(Version::default()),
    };
    let (Ok(version), Ok(params)) = (version, Params::try_from(&parsed)) else {
        return false;
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let mut computed = [0u8; Output::MAX_LENGTH];
    let Some(computed) = computed.get_mut(..expected.len()) else {
        return false;
    };
    let (blocks, passes) = (params.block_count(), params.t_cost());
    let argon2 = Argon2::new(algorithm, version, params);
    let hashed = memory.compute(blocks, passes, |memory| {
        argon2.hash_password_into_with_memory(password, salt, computed, memory)
    });
    hashed.is_ok() && Output::new(computed).is_ok_and(|computed| computed == expected)
}

/// What a pool's argon2 work has cost so far: the block memory it allocated and the blocks it
/// computed. One block is 1 KiB (RFC 9106 §3.2); a run of m_cost KiB and t_cost passes
/// computes m_cost × t_cost blocks, whatever the password, so equal runs mean equal work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Argon2Usage {
    /// Block buffers allocated: one per hashing thread when it starts, plus one for each run
    /// whose m_cost exceeds the thread's buffer (a stored hash with a larger memory cost).
    pub buffers_allocated: u64,
    /// Their total size in KiB (blocks).
    pub kib_allocated: u64,
    /// Hashes computed (verifications and new hashes, the dummy hash included).
    pub runs: u64,
    /// Blocks computed by those runs: m_cost × t_cost each.
    pub blocks_computed: u64,
}

/// [`Argon2Usage`], counted by the pool's threads as they allocate and compute.
#[derive(Debug, Default)]
struct UsageCounters {
    buffers_allocated: AtomicU64,
    kib_allocated: AtomicU64,
    runs: AtomicU64,
    blocks_computed: AtomicU64,
}

impl UsageCounters {
    fn allocated(&self, blocks: usize) {
        self.buffers_allocated.fetch_add(1, Ordering::Relaxed);
        self.kib_allocated
            .fetch_add(u64::try_from(blocks).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn computed(&self, blocks: usize, passes: u32) {
        let blocks = u64::try_from(blocks).unwrap_or(u64::MAX);
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.blocks_computed
            .fetch_add(blocks.saturating_mul(u64::from(passes)), Ordering::Relaxed);
    }

    fn snapshot(&self) -> Argon2Usage {
        Argon2Usage {
            buffers_allocated: self.buffers_allocated.load(Ordering::Relaxed),
            kib_allocated: self.kib_allocated.load(Ordering::Relaxed),
            runs: self.runs.load(Ordering::Relaxed),
            blocks_computed: self.blocks_computed.load(Ordering::Relaxed),
        }
    }
}

/// One hashing thread's argon2 memory: the buffer it allocates once when it starts, and the
/// pool's counters, which every allocation and run goes through.
struct ThreadMemory {
    buffer: Vec<Block>,
    usage: Arc<UsageCounters>,
}

impl ThreadMemory {
    fn allocate(blocks: usize, usage: Arc<UsageCounters>) -> ThreadMemory {
        usage.allocated(blocks);
        ThreadMemory {
            buffer: vec![Block::default(); blocks],
            usage,
        }
    }

    /// Runs one argon2 computation of `blocks` blocks and `passes` passes on the thread's
    /// buffer, or, when it needs more blocks than the buffer holds, on memory allocated for
    /// this run only.
    fn compute<T>(&mut self, blocks: usize, passes: u32, run: impl FnOnce(&mut [Block]) -> T) -> T {
        self.usage.computed(blocks, passes);
        match self.buffer.get_mut(..blocks) {
            Some(memory) => run(memory),
            None => {
                self.usage.allocated(blocks);
                run(vec![Block::default(); blocks].as_mut_slice())
            }
        }
    }
}

/// One unit of work for a hashing thread: it gets the thread's block memory.
type Job = Box<dyn FnOnce(&mut ThreadMemory) + Send>;

/// Hashes and verifies passwords on `threads` dedicated OS threads (`argon2-0`, `argon2-1`, …),
/// each reusing one buffer of 19456 blocks (19 MiB) for every job, with at most `queue_limit`
/// jobs waiting for a thread. Memory is bounded by threads × 19 MiB whatever the load. Dropping
/// the pool stops its threads (after the jobs they are running).
pub struct PasswordPool {
    jobs: Option<SyncSender<Job>>,
    threads: Vec<JoinHandle<()>>,
    /// Jobs queued or running; a job frees its place when it has run or been dropped.
    in_flight: Arc<AtomicUsize>,
    max_in_flight: usize,
    /// Hash of a random password, made on the pool with the parameters of every new hash:
    /// unknown users are verified against it so they cost the same argon2 work.
    dummy_hash: Arc<str>,
    verifications: AtomicU64,
    usage: Arc<UsageCounters>,
}

/// One place of the pool's bound, held by a job until it has run or been dropped (so a caller
/// that goes away does not free the place of work still queued).
struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordPool {
    /// Starts `threads` hashing threads (at least one), each allocating its block buffer once,
    /// and hashes the dummy password on them.
    pub async fn new(threads: usize, queue_limit: usize) -> Result<PasswordPool, PasswordError> {
        let threads = threads.max(1);
        let max_in_flight = threads + queue_limit;
        // Room for every admitted job, so admission (`in_flight`) is the only bound.
        let (sender, receiver) = sync_channel::<Job>(max_in_flight);
        let receiver = Arc::new(Mutex::new(receiver));
        let blocks = owasp_params()?.block_count();
        let mut pool = PasswordPool {
            jobs: Some(sender),
            threads: Vec::with_capacity(threads),
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight,
            dummy_hash: Arc::from(""),
            verifications: AtomicU64::new(0),
            usage: Arc::new(UsageCounters::default()),
        };
        for index in 0..threads {
            let receiver = receiver.clone();
            let usage = pool.usage.clone();
            let thread = std::thread::Builder::new()
                .name(format!("argon2-{index}"))
                .spawn(move || hashing_thread(&receiver, blocks, usage))
                .map_err(PasswordError::Threads)?;
            pool.threads.push(thread);
        }
        let mut random = [0u8; 24];
        SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| PasswordError::Hash)?;
        let dummy_password = random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        pool.dummy_hash = pool.hash(SecretString::from(dummy_password)).await?.into();
        Ok(pool)
    }

    /// Verifies the RFC 8265 OpaqueString form of `password` against `hash`, or against the
    /// dummy hash when there is no user or the password is not a valid OpaqueString (always
    /// `false` then). Takes the same time either way: one argon2 run, never a second try
    /// with the raw form.
    pub async fn verify(
        &self,
        password: SecretString,
        hash: Option<String>,
    ) -> Result<bool, PasswordError> {
        let (password, hash) = match prepare_password(password.expose_secret()) {
            Ok(prepared) => (SecretString::from(prepared.into_owned()), hash),
            Err(_) => (password, None),
        };
        let known = hash.is_some();
        let hash: Arc<str> = match hash {
            Some(hash) => hash.into(),
            None => self.dummy_hash.clone(),
        };
        let matched = self
            .run(move |memory| {
                verify_with_memory(password.expose_secret().as_bytes(), &hash, memory)
            })
            .await?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        Ok(known && matched)
    }

    /// Hashes a new password into a PHC string (argon2id, OWASP parameters) on the pool, so
    /// creating or resetting users in a running server shares the same memory bound as logins.
    pub async fn hash(&self, password: SecretString) -> Result<String, PasswordError> {
        let prepared = prepare_password(password.expose_secret())
            .map_err(PasswordError::Invalid)?
            .into_owned();
        let prepared = SecretString::from(prepared);
        let params = owasp_params()?;
        let (blocks, passes) = (params.block_count(), params.t_cost());
        self.run(move |memory| {
            memory.compute(blocks, passes, |memory| {
                hash_with_memory(prepared.expose_secret().as_bytes(), memory)
            })
        })
        .await?
    }

    /// How many argon2 verifications have run (unknown users included).
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// The argon2 memory the pool has allocated and the work it has computed since it started.
    pub fn usage(&self) -> Argon2Usage {
        self.usage.snapshot()
    }

    /// Jobs admitted and not finished: running on a thread or waiting in the queue.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Occupies one hashing thread until the returned guard is dropped, for tests that need a
    /// saturated pool (the 503 a login then gets). Returns once the thread is held; the place it
    /// takes counts against the pool's bound like any job. Drop the guard before the pool. (A
    /// seam for tests; the servers never call it.)
    pub async fn hold_a_thread(&self) -> Result<HeldThread, PasswordError> {
        let (held, is_held) = oneshot::channel();
        let (release, until_released) = std::sync::mpsc::channel::<()>();
        let finished = self.submit(move |_| {
            let _ = held.send(());
            // Returns when the guard drops its sender.
            let _ = until_released.recv();
        })?;
        is_held.await.map_err(|_| PasswordError::Hash)?;
        Ok(HeldThread {
            _release: release,
            _finished: finished,
        })
    }

    /// Queues `work` for a hashing thread, or refuses at once when threads and queue are full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut ThreadMemory) -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        self.submit(work)?.await.map_err(|_| PasswordError::Hash)
    }

    /// Admits `work` and queues it for a hashing thread; its result arrives on the receiver.
    fn submit<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut ThreadMemory) -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>, PasswordError> {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.max_in_flight {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(PasswordError::Saturated);
        }
        let place = Place(self.in_flight.clone());
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _place = place;
            // The caller went away (client disconnected): skip the work.
            if !reply.is_closed() {
                let _ = reply.send(work(memory));
            }
        });
        let jobs = self.jobs.as_ref().ok_or(PasswordError::Hash)?;
        jobs.try_send(job).map_err(|err| match err {
            TrySendError::Full(_) => PasswordError::Saturated,
            TrySendError::Disconnected(_) => PasswordError::Hash,
        })?;
        Ok(answer)
    }
}

/// A hashing thread held by [`PasswordPool::hold_a_thread`]; dropping it lets the thread go.
pub struct HeldThread {
    _release: std::sync::mpsc::Sender<()>,
    _finished: oneshot::Receiver<()>,
}

/// The loop of one hashing thread: allocate the block buffer once, run jobs on it until the
/// pool is dropped.
fn hashing_thread(jobs: &Mutex<Receiver<Job>>, blocks: usize, usage: Arc<UsageCounters>) {
    let mut memory = ThreadMemory::allocate(blocks, usage);
    loop {
        // The lock is released before the job runs, so the other threads take the next ones.
        let job = match jobs.lock() {
            Ok(jobs) => jobs.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(&mut memory),
            Err(_) => return,
        }
    }
}

impl Drop for PasswordPool {
    fn drop(&mut self) {
        // Closing the channel ends each thread's loop once the queue is drained (jobs of
        // callers that went away are skipped).
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    /// Tests that create pools run one at a time, so each can count the `argon2-*` threads of
    /// the process as its own.
    static POOLS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    /// Threads of this process named `argon2-*` (Linux: /proc/self/task/*/comm).
    fn argon2_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .filter(|comm| comm.starts_with("argon2-"))
            .count()
    }

    /// Polls (bounded) until the process has `expected` hashing threads; returns the last count.
    async fn wait_for_argon2_threads(expected: usize) -> usize {
        let mut count = argon2_threads();
        for _ in 0..200 {
            if count == expected {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            count = argon2_threads();
        }
        count
    }

    #[test]
    fn policy_table() {
        assert!(check_policy("correct horse battery", "a@b.c").is_ok());
        assert!(matches!(
            check_policy("short", "a@b.c"),
            Err(PasswordError::TooShort)
        ));
        assert!(matches!(
            check_policy("Password123", "a@b.c"),
            Err(PasswordError::TooCommon)
        ));
        assert!(matches!(
            check_policy("someone@example.com", "Someone@Example.com"),
            Err(PasswordError::TooCommon)
        ));
        assert!(matches!(
            check_policy(&"x".repeat(2000), "a@b.c"),
            Err(PasswordError::TooLong)
        ));
        // RFC 8265: the prepared form is what is checked.
        assert!(matches!(
            check_policy("correct\u{7}horse", "a@b.c"),
            Err(PasswordError::Invalid(_))
        ));
        assert!(matches!(
            check_policy("", "a@b.c"),
            Err(PasswordError::TooShort)
        ));
        assert!(matches!(
            check_policy("Jose\u{301}@example.com", "jos\u{e9}@Example.com"),
            Err(PasswordError::TooCommon)
        ));
        // 1024 bytes of NFD "é" (3 bytes) shrink to NFC (2 bytes) within the limit.
        let nfd = "e\u{301}".repeat(MAX_PASSWORD_LEN / 3 + 1);
        assert!(nfd.len() > MAX_PASSWORD_LEN);
        assert!(check_policy(&nfd, "a@b.c").is_ok());
    }

    #[tokio::test]
    async fn nfd_and_nfc_forms_of_a_password_verify_alike() {
        let pool = PasswordPool::new(1, 4).await.unwrap();
        let secret = |s: &str| SecretString::from(s.to_owned());
        let nfc = "caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e";
        let nfd = "cafe\u{301} cre\u{300}me bru\u{302}le\u{301}e";
        for (created, presented) in [(nfc, nfd), (nfd, nfc), (nfc, nfc), (nfd, nfd)] {
            let hash = hash_password(created).unwrap();
            assert!(
                pool.verify(secret(presented), Some(hash)).await.unwrap(),
                "{created:?} / {presented:?}"
            );
        }
        let before = pool.verifications();
        assert!(
            !pool
                .verify(
                    secret("bad\u{7}password"),
                    Some(hash_password(nfc).unwrap())
                )
                .await
                .unwrap(),
            "an invalid OpaqueString never matches"
        );
        assert_eq!(pool.verifications() - before, 1, "still one argon2 run");
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let _serial = POOLS.lock().await;
        let hash = hash_password("correct horse battery").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        let pool = PasswordPool::new(1, 4).await.unwrap();
        assert!(
            pool.verify(secret("correct horse battery"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !pool
                .verify(secret("wrong horse battery"), Some(hash))
                .await
                .unwrap()
        );
        assert!(!pool.verify(secret("anything"), None).await.unwrap());
        assert_eq!(pool.verifications(), 3);
    }

    #[tokio::test]
    async fn pool_verdicts_match_argon2s_own_verify() {
        let _serial = POOLS.lock().await;
        let pool = PasswordPool::new(2, 4).await.unwrap();
        let from_cli = hash_password("correct horse battery").unwrap();
        let from_pool = pool.hash(secret("correct horse battery")).await.unwrap();
        assert!(
            from_pool.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{from_pool}"
        );
        assert_ne!(from_cli, from_pool, "each hash has its own salt");
        let reference = Argon2::default();
        for hash in [from_cli, from_pool] {
            let parsed = PasswordHash::new(&hash).unwrap();
            for (password, expected) in [
                ("correct horse battery", true),
                ("correct horse batterY", false),
                ("", false),
            ] {
                let theirs = reference
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok();
                let ours = pool
                    .verify(secret(password), Some(hash.clone()))
                    .await
                    .unwrap();
                assert_eq!(theirs, expected, "argon2 on {password:?}");
                assert_eq!(ours, theirs, "pool on {password:?} against {hash}");
            }
        }
        for malformed in [
            "",
            "$argon2id$stub",
            "plain text",
            "$argon2id$v=19$m=19456,t=2,p=1$",
        ] {
            assert!(
                !pool
                    .verify(secret("correct horse battery"), Some(malformed.to_owned()))
                    .await
                    .unwrap(),
                "{malformed:?}"
            );
        }
    }

    #[tokio::test]
    async fn hashes_with_other_parameters_verify() {
        let _serial = POOLS.lock().await;
        let pool = PasswordPool::new(1, 4).await.unwrap();
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        // Smaller and larger than the threads' buffers, several lanes, other variants, a longer
        // output.
        let cases = [
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(8_192, 3, 1, None),
            ),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(32_768, 2, 1, None),
            ),
            (
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(19_456, 2, 4, Some(64)),
            ),
            (
                Algorithm::Argon2i,
                Version::V0x13,
                Params::new(4_096, 3, 1, None),
            ),
            (
                Algorithm::Argon2d,
                Version::V0x10,
                Params::new(4_096, 1, 2, None),
            ),
        ];
        for (algorithm, version, params) in cases {
            let hash = Argon2::new(algorithm, version, params.unwrap())
                .hash_password(b"correct horse battery", &salt)
                .unwrap()
                .to_string();
            assert!(
                pool.verify(secret("correct horse battery"), Some(hash.clone()))
                    .await
                    .unwrap(),
                "{hash}"
            );
            assert!(
                !pool
                    .verify(secret("wrong horse battery"), Some(hash.clone()))
                    .await
                    .unwrap(),
                "{hash}"
            );
        }
    }

    #[tokio::test]
    async fn a_full_pool_refuses_instead_of_queueing() {
        let _serial = POOLS.lock().await;
        let pool = Arc::new(PasswordPool::new(1, 1).await.unwrap());
        let hash = hash_password("correct horse battery").unwrap();
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                let hash = hash.clone();
                tokio::spawn(async move {
                    pool.verify(SecretString::from("x".to_owned()), Some(hash))
                        .await
                })
            })
            .collect();
        let mut saturated = 0;
        for call in calls {
            if matches!(call.await.unwrap(), Err(PasswordError::Saturated)) {
                saturated += 1;
            }
        }
        assert!(
            saturated >= 1,
            "8 callers on a pool of 1 + queue of 1 must see refusals"
        );
        assert!(
            saturated <= 6,
            "at least the running and the queued call complete"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_pool_runs_on_exactly_its_threads_whatever_the_load() {
        let _serial = POOLS.lock().await;
        assert_eq!(wait_for_argon2_threads(0).await, 0, "no pool yet");
        let pool = Arc::new(PasswordPool::new(2, 64).await.unwrap());
        assert_eq!(argon2_threads(), 2);
        let hash = hash_password("correct horse battery").unwrap();
        let calls: Vec<_> = (0..32)
            .map(|i| {
                let pool = pool.clone();
                let hash = hash.clone();
                tokio::spawn(async move {
                    let password = if i % 2 == 0 {
                        "correct horse battery"
                    } else {
                        "nope"
                    };
                    let verdict = pool.verify(secret(password), Some(hash)).await.unwrap();
                    (i, verdict, argon2_threads())
                })
            })
            .collect();
        for call in calls {
            let (i, verdict, threads) = call.await.unwrap();
            assert_eq!(verdict, i % 2 == 0, "call {i}");
            assert_eq!(threads, 2, "threads seen by call {i}");
        }
        assert_eq!(pool.verifications(), 32);
        assert_eq!(argon2_threads(), 2);
        let usage = pool.usage();
        assert_eq!(
            (usage.buffers_allocated, usage.kib_allocated),
            (2, 2 * 19_456),
            "one 19 MiB buffer per thread, allocated once: {usage:?}"
        );
        assert_eq!(usage.runs, 33, "the dummy hash and the 32 calls");
        assert_eq!(usage.blocks_computed, 33 * 19_456 * 2);
        drop(Arc::into_inner(pool).expect("the calls are done"));
        assert_eq!(
            wait_for_argon2_threads(0).await,
            0,
            "dropping the pool stops its threads"
        );
    }
}
