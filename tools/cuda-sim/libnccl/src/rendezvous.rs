//! Where the ranks of a communicator meet: a hub (a TCP listener started by `ncclGetUniqueId` in the process
//! that made the id) and one TCP connection per rank, whether the ranks are threads of one process or separate
//! processes. A collective is: every rank sends its buffer, the hub folds them in rank order
//! (`reduce::reduce`) and sends each rank the result. The hub notices a rank that goes away (its connection
//! closes without a goodbye) and fails every pending and later collective with a message naming it; a rank that
//! does not arrive within the timeout fails them naming the missing ranks.
//!
//! Wire format (little-endian): hello `token u64, rank u32, nranks u32, pid u32` → `status u8 [msg]`;
//! then per collective `1u8, seq u64, kind u8, dtype u32, op u32, root u32, count u64, len u64, bytes` →
//! `status u8, (len u64, bytes | msg)`; `2u8` is a goodbye. A msg is `len u32, utf-8`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::reduce::{self, DType, RedOp};

const MAGIC: &[u8; 12] = b"cuda-sim-ncl";

/// How long a rank waits for the others (`CUDA_SIM_NCCL_TIMEOUT_S`, default 120 s).
pub fn timeout() -> Duration {
    let s = std::env::var("CUDA_SIM_NCCL_TIMEOUT_S").ok().and_then(|v| v.trim().parse::<f64>().ok());
    Duration::from_secs_f64(s.filter(|s| *s > 0.0).unwrap_or(120.0))
}

/// The contents of an `ncclUniqueId`: where the hub listens and the token a rank must present.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Id {
    pub addr: SocketAddrV4,
    pub token: u64,
}

impl Id {
    pub fn encode(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[..12].copy_from_slice(MAGIC);
        b[12..16].copy_from_slice(&self.addr.ip().octets());
        b[16..18].copy_from_slice(&self.addr.port().to_le_bytes());
        b[18..26].copy_from_slice(&self.token.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8; 128]) -> Option<Id> {
        if &b[..12] != MAGIC {
            return None;
        }
        let ip = Ipv4Addr::new(b[12], b[13], b[14], b[15]);
        let port = u16::from_le_bytes([b[16], b[17]]);
        let token = u64::from_le_bytes(b[18..26].try_into().ok()?);
        Some(Id { addr: SocketAddrV4::new(ip, port), token })
    }
}

/// One collective as a rank asks for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub seq: u64,
    /// 0 all-reduce, 1 broadcast.
    pub kind: u8,
    pub dtype: DType,
    pub op: RedOp,
    pub root: u32,
    pub count: u64,
}

pub const ALL_REDUCE: u8 = 0;
pub const BROADCAST: u8 = 1;

fn read_u8(s: &mut impl Read) -> std::io::Result<u8> {
    let mut b = [0u8; 1];
    s.read_exact(&mut b)?;
    Ok(b[0])
}
fn read_u32(s: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}
fn read_u64(s: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}
fn read_bytes(s: &mut impl Read, n: usize) -> std::io::Result<Vec<u8>> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v)?;
    Ok(v)
}
fn read_msg(s: &mut impl Read) -> std::io::Result<String> {
    let n = read_u32(s)? as usize;
    Ok(String::from_utf8_lossy(&read_bytes(s, n)?).into_owned())
}
fn msg_bytes(m: &str) -> Vec<u8> {
    let mut v = (m.len() as u32).to_le_bytes().to_vec();
    v.extend_from_slice(m.as_bytes());
    v
}

fn bad_data(m: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m)
}

// ------------------------------------------------------------------------------------------------------------
// The hub

#[derive(Default)]
struct Slot {
    header: Option<Header>,
    inputs: Vec<Option<Vec<u8>>>,
    result: Option<Arc<Result<Vec<u8>, String>>>,
    taken: usize,
}

struct HubState {
    nranks: usize,
    joined: Vec<bool>,
    /// Why a rank left: a goodbye or a lost connection.
    gone: Vec<Option<String>>,
    /// The first failure: every pending and later collective returns it.
    failed: Option<String>,
    slots: HashMap<u64, Slot>,
}

struct Hub {
    token: u64,
    timeout: Duration,
    state: Mutex<HubState>,
    cv: Condvar,
}

/// Start a hub on `CUDA_SIM_NCCL_ADDR` (default 127.0.0.1, any free port) and return its id.
pub fn start_hub() -> std::io::Result<Id> {
    start_hub_with(timeout())
}

/// `start_hub` with the time a collective waits for missing ranks.
pub fn start_hub_with(wait: Duration) -> std::io::Result<Id> {
    let bind = std::env::var("CUDA_SIM_NCCL_ADDR").unwrap_or_else(|_| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&bind)?;
    let addr = match listener.local_addr()? {
        std::net::SocketAddr::V4(a) => a,
        other => return Err(bad_data(format!("cuda-sim nccl: {other} is not an IPv4 address"))),
    };
    let token = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(Instant::now().elapsed().as_nanos() ^ std::process::id() as u128);
        h.write_u16(addr.port());
        h.finish()
    };
    let hub = Arc::new(Hub {
        token,
        timeout: wait,
        state: Mutex::new(HubState {
            nranks: 0,
            joined: Vec::new(),
            gone: Vec::new(),
            failed: None,
            slots: HashMap::new(),
        }),
        cv: Condvar::new(),
    });
    std::thread::Builder::new().name("cuda-sim-nccl-hub".into()).spawn(move || {
        for conn in listener.incoming().flatten() {
            let hub = hub.clone();
            let _ = std::thread::Builder::new().name("cuda-sim-nccl-rank".into()).spawn(move || hub.serve(conn));
        }
    })?;
    Ok(Id { addr, token })
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, why: String) {
        let mut st = self.lock();
        st.failed.get_or_insert(why);
        self.cv.notify_all();
    }

    /// One rank's connection, from hello to goodbye or loss.
    fn serve(&self, mut conn: TcpStream) {
        let _ = conn.set_nodelay(true);
        let (rank, pid) = match self.hello(&mut conn) {
            Ok(r) => r,
            Err(e) => {
                let mut reply = vec![1u8];
                reply.extend(msg_bytes(&e.to_string()));
                let _ = conn.write_all(&reply);
                return;
            }
        };
        if conn.write_all(&[0u8]).is_err() {
            self.lost(rank, pid);
            return;
        }
        loop {
            match read_u8(&mut conn) {
                Ok(1) => {}
                Ok(2) => {
                    let mut st = self.lock();
                    st.gone[rank] = Some(format!("rank {rank} (pid {pid}) destroyed its communicator"));
                    self.cv.notify_all();
                    return;
                }
                _ => {
                    self.lost(rank, pid);
                    return;
                }
            }
            let Ok((h, data)) = read_request(&mut conn) else {
                self.lost(rank, pid);
                return;
            };
            let result = self.collective(rank, h, data);
            let mut reply = Vec::new();
            match &*result {
                Ok(bytes) => {
                    reply.push(0u8);
                    reply.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
                    reply.extend_from_slice(bytes);
                }
                Err(m) => {
                    reply.push(1u8);
                    reply.extend(msg_bytes(m));
                }
            }
            if conn.write_all(&reply).is_err() {
                self.lost(rank, pid);
                return;
            }
        }
    }

    fn lost(&self, rank: usize, pid: u32) {
        let why = format!(
            "rank {rank} (pid {pid}) closed its connection without destroying its communicator: its process exited or was killed"
        );
        {
            let mut st = self.lock();
            if rank < st.gone.len() && st.gone[rank].is_none() {
                st.gone[rank] = Some(why.clone());
            }
        }
        self.fail(why);
    }

    fn hello(&self, conn: &mut TcpStream) -> std::io::Result<(usize, u32)> {
        conn.set_read_timeout(Some(self.timeout))?;
        let token = read_u64(conn)?;
        let (rank, nranks, pid) = (read_u32(conn)? as usize, read_u32(conn)? as usize, read_u32(conn)?);
        conn.set_read_timeout(None)?;
        if token != self.token {
            return Err(bad_data("cuda-sim nccl: the unique id's token does not match this rendezvous".into()));
        }
        let mut st = self.lock();
        if st.nranks == 0 {
            st.nranks = nranks;
            st.joined = vec![false; nranks];
            st.gone = vec![None; nranks];
        }
        if nranks != st.nranks || rank >= nranks {
            return Err(bad_data(format!(
                "cuda-sim nccl: rank {rank} of {nranks} joined a communicator of {} ranks",
                st.nranks
            )));
        }
        if st.joined[rank] {
            return Err(bad_data(format!("cuda-sim nccl: rank {rank} joined twice")));
        }
        st.joined[rank] = true;
        Ok((rank, pid))
    }

    /// Deposit rank `rank`'s part of collective `h.seq`, wait for the others, return the result.
    fn collective(&self, rank: usize, h: Header, data: Vec<u8>) -> Arc<Result<Vec<u8>, String>> {
        let mut st = self.lock();
        let n = st.nranks;
        let slot = st.slots.entry(h.seq).or_default();
        if slot.inputs.is_empty() {
            slot.inputs = vec![None; n];
        }
        let mismatch = match slot.header {
            Some(other) if other != h => Some(format!(
                "cuda-sim nccl: collective #{} differs between ranks ({other:?} vs rank {rank}'s {h:?}): every rank must issue the same collectives in the same order",
                h.seq
            )),
            _ => None,
        };
        slot.header = Some(h);
        slot.inputs[rank] = Some(data);
        if let Some(m) = mismatch {
            st.failed.get_or_insert(m);
            self.cv.notify_all();
        } else if slot.inputs.iter().all(Option::is_some) && slot.result.is_none() {
            let inputs: Vec<&[u8]> = slot.inputs.iter().map(|b| b.as_deref().unwrap_or(&[])).collect();
            let out = match h.kind {
                BROADCAST => inputs[h.root as usize].to_vec(),
                _ => reduce::reduce(&inputs, h.dtype, h.op),
            };
            slot.result = Some(Arc::new(Ok(out)));
            self.cv.notify_all();
        }
        let deadline = Instant::now() + self.timeout;
        loop {
            let slot = st.slots.get_mut(&h.seq).expect("inserted above");
            if let Some(r) = slot.result.clone() {
                slot.taken += 1;
                if slot.taken == n {
                    st.slots.remove(&h.seq);
                }
                return r;
            }
            let missing: Vec<usize> =
                slot.inputs.iter().enumerate().filter(|(_, b)| b.is_none()).map(|(r, _)| r).collect();
            if let Some(f) = &st.failed {
                return Arc::new(Err(f.clone()));
            }
            if let Some(why) = missing.iter().find_map(|&r| st.gone[r].clone()) {
                return Arc::new(Err(why));
            }
            let now = Instant::now();
            if now >= deadline {
                let why = format!(
                    "cuda-sim nccl: timed out after {:.0} s waiting for rank(s) {missing:?} in collective #{}",
                    self.timeout.as_secs_f64(),
                    h.seq
                );
                st.failed.get_or_insert(why.clone());
                self.cv.notify_all();
                return Arc::new(Err(why));
            }
            st = self.cv.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

fn read_request(conn: &mut TcpStream) -> std::io::Result<(Header, Vec<u8>)> {
    let seq = read_u64(conn)?;
    let kind = read_u8(conn)?;
    let dtype = DType::from_raw(read_u32(conn)?).ok_or_else(|| bad_data("bad dtype".into()))?;
    let op = RedOp::from_raw(read_u32(conn)?).ok_or_else(|| bad_data("bad op".into()))?;
    let root = read_u32(conn)?;
    let count = read_u64(conn)?;
    let len = read_u64(conn)? as usize;
    Ok((Header { seq, kind, dtype, op, root, count }, read_bytes(conn, len)?))
}

// ------------------------------------------------------------------------------------------------------------
// A rank's side

/// A rank's connection to the hub.
#[derive(Debug)]
pub struct Link {
    conn: TcpStream,
    pub rank: usize,
    pub nranks: usize,
}

impl Link {
    /// Join communicator `id` as `rank` of `nranks`.
    pub fn join(id: &Id, rank: usize, nranks: usize) -> Result<Link, String> {
        let t = timeout();
        let mut conn = TcpStream::connect_timeout(&std::net::SocketAddr::V4(id.addr), t)
            .map_err(|e| format!("cuda-sim nccl: rank {rank} cannot reach the rendezvous at {}: {e}", id.addr))?;
        let _ = conn.set_nodelay(true);
        // The hub answers every request within its own timeout; ours is a backstop for a hub that is gone.
        conn.set_read_timeout(Some(t + Duration::from_secs(10))).map_err(|e| e.to_string())?;
        let mut hello = id.token.to_le_bytes().to_vec();
        hello.extend_from_slice(&(rank as u32).to_le_bytes());
        hello.extend_from_slice(&(nranks as u32).to_le_bytes());
        hello.extend_from_slice(&std::process::id().to_le_bytes());
        conn.write_all(&hello).map_err(|e| format!("cuda-sim nccl: rank {rank}: {e}"))?;
        match read_u8(&mut conn) {
            Ok(0) => Ok(Link { conn, rank, nranks }),
            Ok(_) => Err(read_msg(&mut conn).unwrap_or_else(|e| e.to_string())),
            Err(e) => Err(format!("cuda-sim nccl: rank {rank}: no answer from the rendezvous at {}: {e}", id.addr)),
        }
    }

    /// Send this rank's part of a collective (the first half of `run`, so one thread can drive several ranks).
    pub fn send(&mut self, h: &Header, data: &[u8]) -> Result<(), String> {
        let mut m = vec![1u8];
        m.extend_from_slice(&h.seq.to_le_bytes());
        m.push(h.kind);
        m.extend_from_slice(&h.dtype.raw().to_le_bytes());
        m.extend_from_slice(&h.op.raw().to_le_bytes());
        m.extend_from_slice(&h.root.to_le_bytes());
        m.extend_from_slice(&h.count.to_le_bytes());
        m.extend_from_slice(&(data.len() as u64).to_le_bytes());
        m.extend_from_slice(data);
        self.conn.write_all(&m).map_err(|e| self.hub_lost(e))
    }

    /// The result of the collective `send` started.
    pub fn receive(&mut self) -> Result<Vec<u8>, String> {
        let status = read_u8(&mut self.conn).map_err(|e| self.hub_lost(e))?;
        if status == 0 {
            let n = read_u64(&mut self.conn).map_err(|e| self.hub_lost(e))? as usize;
            read_bytes(&mut self.conn, n).map_err(|e| self.hub_lost(e))
        } else {
            Err(read_msg(&mut self.conn).unwrap_or_else(|e| self.hub_lost(e)))
        }
    }

    pub fn run(&mut self, h: &Header, data: &[u8]) -> Result<Vec<u8>, String> {
        self.send(h, data)?;
        self.receive()
    }

    fn hub_lost(&self, e: std::io::Error) -> String {
        format!(
            "cuda-sim nccl: rank {} lost the rendezvous (hosted by the process that created the unique id): {e}",
            self.rank
        )
    }

    /// Leave cleanly: the others' later collectives fail naming this rank instead of waiting for it.
    pub fn goodbye(mut self) {
        let _ = self.conn.write_all(&[2u8]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(seq: u64, kind: u8, dtype: DType, count: u64) -> Header {
        Header { seq, kind, dtype, op: RedOp::Sum, root: 0, count }
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn ids_round_trip_and_reject_foreign_bytes() {
        let id = Id { addr: SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 4567), token: 0xDEAD_BEEF_1234 };
        assert_eq!(Id::decode(&id.encode()), Some(id));
        assert_eq!(Id::decode(&[7u8; 128]), None);
    }

    #[test]
    fn threads_all_reduce_and_broadcast_in_rank_order() {
        let id = start_hub().unwrap();
        let n = 4;
        let handles: Vec<_> = (0..n)
            .map(|r| {
                std::thread::spawn(move || {
                    let mut link = Link::join(&id, r, n).unwrap();
                    let mine = f32s(&[
                        r as f32 + 1.0,
                        if r == 0 {
                            1e8
                        } else if r == 1 {
                            1.0
                        } else {
                            0.0
                        },
                    ]);
                    let sum = link.run(&hdr(0, ALL_REDUCE, DType::F32, 2), &mine).unwrap();
                    let root = if r == 2 { f32s(&[42.0, 43.0]) } else { Vec::new() };
                    let b = link.run(&Header { root: 2, ..hdr(1, BROADCAST, DType::F32, 2) }, &root).unwrap();
                    link.goodbye();
                    (sum, b)
                })
            })
            .collect();
        for h in handles {
            let (sum, b) = h.join().unwrap();
            assert_eq!(sum, f32s(&[10.0, 1e8f32 + 1.0]));
            assert_eq!(b, f32s(&[42.0, 43.0]));
        }
    }

    #[test]
    fn one_thread_drives_every_rank() {
        let id = start_hub().unwrap();
        let mut links: Vec<Link> = (0..3).map(|r| Link::join(&id, r, 3).unwrap()).collect();
        for (r, l) in links.iter_mut().enumerate() {
            l.send(&hdr(0, ALL_REDUCE, DType::F32, 1), &f32s(&[r as f32])).unwrap();
        }
        for l in links.iter_mut() {
            assert_eq!(l.receive().unwrap(), f32s(&[3.0]));
        }
    }

    #[test]
    fn a_lost_rank_fails_the_others_naming_it() {
        let id = start_hub().unwrap();
        let mut a = Link::join(&id, 0, 2).unwrap();
        let b = Link::join(&id, 1, 2).unwrap();
        drop(b); // closed without a goodbye: what a killed process leaves behind
        let err = a.run(&hdr(0, ALL_REDUCE, DType::F32, 1), &f32s(&[1.0])).unwrap_err();
        assert!(err.contains("rank 1") && err.contains("killed"), "{err}");
    }

    #[test]
    fn a_missing_rank_times_out_naming_it() {
        let id = start_hub_with(Duration::from_secs(1)).unwrap();
        let mut a = Link::join(&id, 0, 3).unwrap();
        let _b = Link::join(&id, 1, 3).unwrap();
        let t0 = Instant::now();
        let err = a.run(&hdr(0, ALL_REDUCE, DType::F32, 1), &f32s(&[1.0])).unwrap_err();
        assert!(err.contains("timed out") && err.contains("[1, 2]"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn mismatched_collectives_and_bad_joins_are_errors() {
        let id = start_hub().unwrap();
        let _a = Link::join(&id, 0, 2).unwrap();
        assert!(Link::join(&id, 0, 2).unwrap_err().contains("twice"));
        assert!(Link::join(&id, 1, 3).unwrap_err().contains("2 ranks"));
        let bad = Id { token: id.token ^ 1, ..id };
        assert!(Link::join(&bad, 1, 2).unwrap_err().contains("token"));
        let id = start_hub().unwrap();
        let (mut a, mut b) = (Link::join(&id, 0, 2).unwrap(), Link::join(&id, 1, 2).unwrap());
        a.send(&hdr(0, ALL_REDUCE, DType::F32, 1), &f32s(&[1.0])).unwrap();
        b.send(&hdr(0, ALL_REDUCE, DType::F32, 2), &f32s(&[1.0, 2.0])).unwrap();
        assert!(a.receive().unwrap_err().contains("differs"));
        assert!(b.receive().unwrap_err().contains("differs"));
    }
}
