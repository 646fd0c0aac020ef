//! Which replicas this process runs, and how processes find each other.
//!
//! - One process, several GPUs: `--device cuda:0,1,2,3` or `cuda:all` (a replica per listed GPU).
//! - Several processes (one GPU each; on one machine or many): the variables torchrun sets (`MASTER_ADDR`,
//!   `MASTER_PORT`, `RANK`, `WORLD_SIZE`, `LOCAL_RANK`), or SLURM's (`SLURM_PROCID`, `SLURM_NTASKS`,
//!   `SLURM_LOCALID`, with `MASTER_ADDR` / `MASTER_PORT` exported by the job script) when torchrun's are absent.
//!   Each process drives GPU `LOCAL_RANK`. Rank 0 listens on `MASTER_PORT` (`MASTER_PORT + 1` under torchrun,
//!   whose agent serves its own store on `MASTER_PORT`; `DDPM_DIST_PORT` overrides both), every other rank
//!   connects (retrying until the timeout), rank 0 makes the NCCL unique id and sends it to each.
//!
//! The handshake connections stay open as a watchdog: every process sends a heartbeat each timeout/4 seconds; a
//! connection that closes without a goodbye, or stays silent for the timeout, means that rank is gone, and the
//! process prints which rank and exits with status 1 (rank 0 first tells the others which rank was lost). NCCL
//! itself would wait forever on a dead peer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{Device, Error, Result};

use super::comm::{self, UniqueId};

const MAGIC: &[u8; 8] = b"DDPMRDV1";
const HEARTBEAT: u8 = b'H';
const DONE: u8 = b'D';
const LOST: u8 = b'L';

/// The replicas of this process: global ranks `first_rank .. first_rank + devices.len()` of `world`.
#[derive(Debug)]
pub struct Layout {
    pub world: usize,
    pub first_rank: usize,
    pub devices: Vec<Device>,
    /// Set when the world spans several processes.
    pub process: Option<ProcessEnv>,
    /// How long a rank may be silent before the others give up on it.
    pub timeout: Duration,
    /// The most bytes of gradients one all-reduce carries (`replica::BUCKET_BYTES` unless set).
    pub bucket_bytes: usize,
    /// All-reduce a bucket as soon as its gradients are final, during the backward pass (else after it).
    pub overlap: bool,
}

impl Layout {
    /// Whether this process writes the run directory (it holds global rank 0).
    pub fn writes(&self) -> bool {
        self.first_rank == 0
    }
}

/// The launcher's variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessEnv {
    pub rank: usize,
    pub world: usize,
    pub local_rank: usize,
    pub master: String,
    pub port: u16,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number(name: &str, v: &str) -> Result<usize> {
    v.trim().parse().map_err(|_| Error::msg(format!("{name}={v}: expected a whole number")))
}

impl ProcessEnv {
    /// torchrun's variables, else SLURM's; `None` for a single process (no WORLD_SIZE / SLURM_NTASKS above 1).
    pub fn from_env() -> Result<Option<ProcessEnv>> {
        let (world_var, rank_var, local_var) = if var("WORLD_SIZE").is_some() {
            ("WORLD_SIZE", "RANK", "LOCAL_RANK")
        } else if var("SLURM_NTASKS").is_some() {
            ("SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
        } else {
            return Ok(None);
        };
        let world = number(world_var, &var(world_var).unwrap_or_default())?;
        if world <= 1 {
            return Ok(None);
        }
        let need = |n: &str| var(n).ok_or_else(|| Error::msg(format!("{world_var}={world} is set but {n} is not")));
        let rank = number(rank_var, &need(rank_var)?)?;
        let local_rank = number(local_var, &var(local_var).unwrap_or_else(|| "0".into()))?;
        if rank >= world {
            return Err(Error::msg(format!("{rank_var}={rank} but {world_var}={world}")));
        }
        let master = need("MASTER_ADDR")?;
        let given = need("MASTER_PORT")?;
        let port: u16 =
            given.trim().parse().map_err(|_| Error::msg(format!("MASTER_PORT={given}: expected a port number")))?;
        // torchrun's agent already serves its own store on MASTER_PORT: ours takes the next port there
        // (DDPM_DIST_PORT chooses one outright).
        let port = match var("DDPM_DIST_PORT") {
            Some(p) => {
                p.trim().parse().map_err(|_| Error::msg(format!("DDPM_DIST_PORT={p}: expected a port number")))?
            }
            None if var("TORCHELASTIC_RUN_ID").is_some() => port.checked_add(1).unwrap_or(port),
            None => port,
        };
        Ok(Some(ProcessEnv { rank, world, local_rank, master, port }))
    }
}

/// The replicas `--device` asks for: `cuda:0,1,...` or `cuda:all` in one process, or one GPU (`LOCAL_RANK`) per
/// process under torchrun / SLURM. `None`: a plain single-device run (`Device::parse` handles it).
pub fn layout(spec: &str, timeout: Duration) -> Result<Option<Layout>> {
    if let Some(p) = ProcessEnv::from_env()? {
        if spec.contains(',') || spec == "cuda:all" {
            return Err(Error::msg(format!(
                "--device {spec}: under torchrun / srun every process drives one GPU (LOCAL_RANK); use --device cuda"
            )));
        }
        let device = Device::parse(&format!("cuda:{}", p.local_rank))?;
        return Ok(Some(Layout {
            world: p.world,
            first_rank: p.rank,
            devices: vec![device],
            process: Some(p),
            timeout,
            bucket_bytes: super::replica::BUCKET_BYTES,
            overlap: true,
        }));
    }
    let Some(list) = spec.strip_prefix("cuda:").filter(|l| l.contains(',') || *l == "all") else {
        return Ok(None);
    };
    let ordinals: Vec<usize> = if list == "all" {
        (0..crate::backend::cuda::device_count()?).collect()
    } else {
        list.split(',')
            .map(|s| {
                s.trim().parse().map_err(|_| Error::msg(format!("bad device list '{spec}': expected cuda:0,1,...")))
            })
            .collect::<Result<_>>()?
    };
    let mut seen = ordinals.clone();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != ordinals.len() {
        return Err(Error::msg(format!("--device {spec}: a GPU is listed twice")));
    }
    let devices = ordinals.iter().map(|i| Device::parse(&format!("cuda:{i}"))).collect::<Result<Vec<_>>>()?;
    if devices.len() == 1 {
        return Ok(None);
    }
    Ok(Some(Layout {
        world: devices.len(),
        first_rank: 0,
        devices,
        process: None,
        timeout,
        bucket_bytes: super::replica::BUCKET_BYTES,
        overlap: true,
    }))
}

// --------------------------------------------------------------------------------------------------------------
// The handshake and the watchdog

/// This process's handshake connections (rank 0: one per other rank; others: one to rank 0), watched.
pub struct ProcessGroup {
    peers: Arc<Mutex<Vec<(usize, TcpStream)>>>,
    finished: Arc<AtomicBool>,
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::msg(format!("{what}: {e}"))
}

impl ProcessGroup {
    /// Meet the other processes of `env` and return the NCCL id rank 0 made (within `timeout`).
    pub fn rendezvous(env: &ProcessEnv, timeout: Duration) -> Result<(ProcessGroup, UniqueId)> {
        let deadline = Instant::now() + timeout;
        let (peers, id) = if env.rank == 0 { Self::serve(env, deadline)? } else { Self::join(env, deadline)? };
        let group = ProcessGroup { peers: Arc::new(Mutex::new(peers)), finished: Arc::new(AtomicBool::new(false)) };
        group.watch(env.rank, timeout);
        Ok((group, id))
    }

    fn serve(env: &ProcessEnv, deadline: Instant) -> Result<(Vec<(usize, TcpStream)>, UniqueId)> {
        let addr = format!("0.0.0.0:{}", env.port);
        let listener = TcpListener::bind(&addr)
            .map_err(io_err(format!("rank 0 cannot listen on {addr} (MASTER_PORT) for the other ranks")))?;
        listener.set_nonblocking(true).map_err(io_err("rank 0's listener".into()))?;
        let mut peers: Vec<(usize, TcpStream)> = Vec::new();
        while peers.len() + 1 < env.world {
            match listener.accept() {
                Ok((mut s, from)) => {
                    s.set_nonblocking(false).map_err(io_err(format!("the connection from {from}")))?;
                    s.set_read_timeout(Some(
                        deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1)),
                    ))
                    .map_err(io_err(format!("the connection from {from}")))?;
                    let mut hello = [0u8; 16];
                    if s.read_exact(&mut hello).is_err() || &hello[..8] != MAGIC {
                        eprintln!("ddpm-cuda: rank 0 ignored a connection from {from} that is not a ddpm-cuda rank");
                        continue;
                    }
                    let rank = u32::from_le_bytes(hello[8..12].try_into().unwrap()) as usize;
                    let world = u32::from_le_bytes(hello[12..16].try_into().unwrap()) as usize;
                    if world != env.world || rank == 0 || rank >= env.world || peers.iter().any(|(r, _)| *r == rank) {
                        return Err(Error::msg(format!(
                            "rendezvous: {from} joined as rank {rank} of {world}, but this is a world of {} and ranks {:?} have joined",
                            env.world,
                            peers.iter().map(|p| p.0).collect::<Vec<_>>()
                        )));
                    }
                    peers.push((rank, s));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let missing: Vec<usize> = (1..env.world).filter(|r| !peers.iter().any(|p| p.0 == *r)).collect();
                        return Err(Error::msg(format!(
                            "rendezvous on port {}: rank(s) {missing:?} did not connect within the timeout",
                            env.port
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(Error::msg(format!("rank 0 accepting on port {}: {e}", env.port))),
            }
        }
        let id = comm::unique_id()?;
        for (r, s) in &mut peers {
            s.write_all(&id).map_err(io_err(format!("sending the NCCL id to rank {r}")))?;
        }
        Ok((peers, id))
    }

    fn join(env: &ProcessEnv, deadline: Instant) -> Result<(Vec<(usize, TcpStream)>, UniqueId)> {
        let target = format!("{}:{}", env.master, env.port);
        let mut last = String::from("no address");
        let mut stream = None;
        while stream.is_none() {
            let addrs: Vec<SocketAddr> = target.to_socket_addrs().map(|a| a.collect()).unwrap_or_default();
            for a in &addrs {
                match TcpStream::connect_timeout(a, Duration::from_secs(2)) {
                    Ok(s) => {
                        stream = Some(s);
                        break;
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            if stream.is_none() {
                if Instant::now() >= deadline {
                    return Err(Error::msg(format!(
                        "rank {} could not reach rank 0 at {target} (MASTER_ADDR:MASTER_PORT) within the timeout: {last}",
                        env.rank
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let mut s = stream.expect("connected");
        let mut hello = MAGIC.to_vec();
        hello.extend_from_slice(&(env.rank as u32).to_le_bytes());
        hello.extend_from_slice(&(env.world as u32).to_le_bytes());
        s.write_all(&hello).map_err(io_err(format!("rank {} greeting rank 0 at {target}", env.rank)))?;
        s.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1))))
            .map_err(io_err(format!("rank {}", env.rank)))?;
        let mut id = [0u8; 128];
        s.read_exact(&mut id).map_err(io_err(format!(
            "rank {} waiting for the NCCL id from rank 0 at {target} (are all {} ranks started?)",
            env.rank, env.world
        )))?;
        Ok((vec![(0, s)], id))
    }

    /// Heartbeats out, and a reader per peer that ends the process when that peer is gone.
    fn watch(&self, me: usize, timeout: Duration) {
        let beat = (timeout / 4).max(Duration::from_millis(200));
        let peers: Vec<(usize, TcpStream)> = {
            let p = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            p.iter().filter_map(|(r, s)| s.try_clone().ok().map(|s| (*r, s))).collect()
        };
        let (all, finished) = (self.peers.clone(), self.finished.clone());
        let _ = std::thread::Builder::new().name("ddpm-heartbeat".into()).spawn(move || loop {
            std::thread::sleep(beat);
            if finished.load(Ordering::SeqCst) {
                return;
            }
            let mut p = all.lock().unwrap_or_else(|e| e.into_inner());
            for (_, s) in p.iter_mut() {
                let _ = s.write_all(&[HEARTBEAT]);
            }
        });
        for (peer, mut s) in peers {
            let (all, finished) = (self.peers.clone(), self.finished.clone());
            let _ = std::thread::Builder::new().name(format!("ddpm-watch-{peer}")).spawn(move || {
                let _ = s.set_read_timeout(Some(timeout));
                let mut b = [0u8; 1];
                let why = loop {
                    match s.read_exact(&mut b) {
                        Ok(()) if b[0] == HEARTBEAT => continue,
                        Ok(()) if b[0] == DONE => return,
                        Ok(()) if b[0] == LOST => {
                            let mut r = [0u8; 4];
                            let lost = s.read_exact(&mut r).map(|_| u32::from_le_bytes(r).to_string());
                            break format!("rank {} was lost (reported by rank 0)", lost.unwrap_or("?".into()));
                        }
                        Ok(()) => continue,
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                            break format!("rank {peer} sent nothing for {:.0} s (--dist-timeout)", timeout.as_secs_f64());
                        }
                        Err(_) => break format!("rank {peer} is gone: its connection closed without finishing (its process exited or was killed)"),
                    }
                };
                if finished.load(Ordering::SeqCst) {
                    return;
                }
                eprintln!("ddpm-cuda: rank {me}: {why}; stopping (the last checkpoint is kept)");
                if me == 0 {
                    let mut p = all.lock().unwrap_or_else(|e| e.into_inner());
                    for (_, s) in p.iter_mut() {
                        let mut m = vec![LOST];
                        m.extend_from_slice(&(peer as u32).to_le_bytes());
                        let _ = s.write_all(&m);
                    }
                }
                std::process::exit(1);
            });
        }
    }

    /// Tell the others this process ends normally (their watchdogs stop watching it).
    pub fn finish(&self) {
        if self.finished.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut p = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        for (_, s) in p.iter_mut() {
            let _ = s.write_all(&[DONE]);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lists_parse_without_a_gpu_only_as_far_as_opening_them() {
        // A plain device is not a layout.
        assert!(layout("cuda", Duration::from_secs(1)).unwrap().is_none());
        assert!(layout("cpu", Duration::from_secs(1)).unwrap().is_none());
        assert!(layout("cuda:0,x", Duration::from_secs(1)).unwrap_err().to_string().contains("bad device list"));
        assert!(layout("cuda:1,1", Duration::from_secs(1)).unwrap_err().to_string().contains("twice"));
    }
}
