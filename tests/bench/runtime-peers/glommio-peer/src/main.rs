//! `glommio-peer`: the ringcast interface on glommio 0.9, written the way that runtime is
//! meant to be used: one `LocalExecutor` per thread (glommio's thread-per-core model),
//! glommio's SO_REUSEPORT listeners, a task per connection split into a reader (the
//! unbuffered stream reads into a `READ_BYTES` array in the task; glommio 0.9 has no
//! provided buffers) and a writer fed by a per-connection queue (everything queued in one
//! write). `io_memory` is kept small because RLIMIT_MEMLOCK is 8 MiB here. Publishes arrive
//! from the admin thread through one flume inbox per executor.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt, WriteHalf};
use glommio::net::{TcpListener, TcpStream};
use glommio::{LocalExecutorBuilder, Placement};
use runtime_peer_common::{
    Handshake, Hub, Publish, Registry, Route, Session, handshake, parse_args, serve_admin,
};

/// Read buffer per connection (part of its task).
const READ_BYTES: usize = 1024;
/// glommio's registered I/O memory per executor (RLIMIT_MEMLOCK is 8 MiB here).
const IO_MEMORY: usize = 512 << 10;

/// A connection's write side.
struct Conn {
    writer: RefCell<Option<WriteHalf<TcpStream>>>,
    queue: RefCell<VecDeque<Arc<Vec<u8>>>>,
    writing: Cell<bool>,
}

impl Conn {
    /// Queues a frame; starts the writer task when none runs.
    fn send(self: &Rc<Self>, frame: Arc<Vec<u8>>) {
        self.queue.borrow_mut().push_back(frame);
        if !self.writing.replace(true) {
            let conn = Rc::clone(self);
            glommio::spawn_local(async move {
                let Some(mut writer) = conn.writer.borrow_mut().take() else {
                    conn.writing.set(false);
                    return;
                };
                // Everything queued goes out in one write.
                loop {
                    let batch: Vec<u8> =
                        conn.queue
                            .borrow_mut()
                            .drain(..)
                            .fold(Vec::new(), |mut batch, frame| {
                                batch.extend_from_slice(&frame);
                                batch
                            });
                    if batch.is_empty() {
                        break;
                    }
                    if writer.write_all(&batch).await.is_err() {
                        conn.queue.borrow_mut().clear();
                        break;
                    }
                }
                let _ = writer.flush().await;
                *conn.writer.borrow_mut() = Some(writer);
                conn.writing.set(false);
            })
            .detach();
        }
    }
}

type Subscribers = Rc<RefCell<Registry<Rc<Conn>>>>;

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("glommio-peer: {err}");
            std::process::exit(2);
        }
    };
    let (hub, inboxes) = Hub::new(args.threads);
    if let Err(err) = serve_admin(args.admin, Arc::clone(&hub)) {
        eprintln!("glommio-peer: admin {}: {err}", args.admin);
        std::process::exit(1);
    }
    let mut executors = Vec::new();
    for (i, inbox) in inboxes.into_iter().enumerate() {
        let hub = Arc::clone(&hub);
        let listen = args.listen.clone();
        let spawned = LocalExecutorBuilder::new(Placement::Unbound)
            .name(&format!("glommio-peer-{i}"))
            .io_memory(IO_MEMORY)
            .spawn(move || async move {
                let subscribers: Subscribers = Rc::default();
                for addr in listen {
                    let listener = match TcpListener::bind(addr) {
                        Ok(l) => l,
                        Err(err) => {
                            eprintln!("glommio-peer: listen {addr}: {err}");
                            std::process::exit(1);
                        }
                    };
                    glommio::spawn_local(accept_loop(
                        listener,
                        Rc::clone(&subscribers),
                        Arc::clone(&hub),
                    ))
                    .detach();
                }
                while let Ok(publish) = inbox.recv_async().await {
                    deliver(&subscribers, &publish, &hub);
                }
            });
        match spawned {
            Ok(handle) => executors.push(handle),
            Err(err) => {
                eprintln!("glommio-peer: executor {i}: {err}");
                std::process::exit(1);
            }
        }
    }
    for executor in executors {
        let _ = executor.join();
    }
}

fn deliver(subscribers: &Subscribers, publish: &Publish, hub: &Hub) {
    let subscribers = subscribers.borrow();
    let Some(conns) = subscribers.get(&*publish.channel) else {
        return;
    };
    for (_, conn) in conns {
        conn.send(Arc::clone(&publish.frame));
    }
    hub.delivered
        .fetch_add(conns.len() as u64, Ordering::Relaxed);
}

async fn accept_loop(listener: TcpListener, subscribers: Subscribers, hub: Arc<Hub>) {
    loop {
        if let Ok(stream) = listener.accept().await {
            glommio::spawn_local(serve(stream, Rc::clone(&subscribers), Arc::clone(&hub))).detach();
        }
    }
}

async fn serve(mut stream: TcpStream, subscribers: Subscribers, hub: Arc<Hub>) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; READ_BYTES];
    let mut request = Vec::new();
    let (route, response, consumed) = loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        match handshake(&request) {
            Handshake::Partial => {}
            Handshake::Failed(answer) => {
                let _ = stream.write_all(answer).await;
                return;
            }
            Handshake::Done {
                route,
                response,
                consumed,
            } => break (route, response, consumed),
        }
    };
    let (mut reader, writer) = futures_lite::io::split(stream);
    let conn = Rc::new(Conn {
        writer: RefCell::new(Some(writer)),
        queue: RefCell::new(VecDeque::new()),
        writing: Cell::new(false),
    });
    let id = Rc::as_ptr(&conn) as u64;
    conn.send(Arc::new(response));
    hub.connections.fetch_add(1, Ordering::Relaxed);
    let channel = match &route {
        Route::Channel(name) => {
            subscribers
                .borrow_mut()
                .entry(name.clone())
                .or_default()
                .push((id, Rc::clone(&conn)));
            Some(name.clone())
        }
        Route::Echo => None,
    };
    let mut session = Session::new(route == Route::Echo);
    let mut out = Vec::new();
    let mut leftover = request.split_off(consumed);
    drop(request);
    session.on_bytes(&mut leftover, &mut out);
    while !session.closed {
        if !out.is_empty() {
            conn.send(Arc::new(std::mem::take(&mut out)));
        }
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => session.on_bytes(&mut buf[..n], &mut out),
        }
    }
    if !out.is_empty() {
        conn.send(Arc::new(out));
    }
    if let Some(name) = channel {
        let mut subscribers = subscribers.borrow_mut();
        if let Some(conns) = subscribers.get_mut(&name) {
            conns.retain(|(other, _)| *other != id);
            if conns.is_empty() {
                subscribers.remove(&name);
            }
        }
    }
    hub.connections.fetch_sub(1, Ordering::Relaxed);
}
