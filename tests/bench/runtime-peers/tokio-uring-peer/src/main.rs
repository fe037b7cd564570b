//! `tokio-uring-peer`: the ringcast interface on tokio-uring 0.5, written the way that
//! runtime is meant to be used: one `tokio_uring::start` runtime per thread, io_uring
//! accepts on SO_REUSEPORT listeners, a task per connection reading with an owned buffer
//! (tokio-uring 0.5 has no provided buffer rings or multishot receives, so every idle
//! connection keeps a `READ_BYTES` buffer in its pending read), and per-connection write
//! queues drained by a writer task (everything queued in one write). Publishes arrive from
//! the admin thread through one flume inbox per runtime thread.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use runtime_peer_common::{
    Handshake, Hub, Publish, Registry, Route, Session, handshake, parse_args, reuseport_listener,
    serve_admin,
};
use tokio_uring::net::{TcpListener, TcpStream};

/// Owned read buffer per connection.
const READ_BYTES: usize = 1024;

/// A connection's write side.
struct Conn {
    stream: Rc<TcpStream>,
    queue: RefCell<VecDeque<Arc<Vec<u8>>>>,
    writing: Cell<bool>,
}

impl Conn {
    /// Queues a frame; starts the writer task when none runs.
    fn send(self: &Rc<Self>, frame: Arc<Vec<u8>>) {
        self.queue.borrow_mut().push_back(frame);
        if !self.writing.replace(true) {
            let conn = Rc::clone(self);
            tokio_uring::spawn(async move {
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
                    let (result, _) = conn.stream.write_all(batch).await;
                    if result.is_err() {
                        conn.queue.borrow_mut().clear();
                        break;
                    }
                }
                conn.writing.set(false);
            });
        }
    }
}

type Subscribers = Rc<RefCell<Registry<Rc<Conn>>>>;

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(err) => {
            eprintln!("tokio-uring-peer: {err}");
            std::process::exit(2);
        }
    };
    let (hub, inboxes) = Hub::new(args.threads);
    if let Err(err) = serve_admin(args.admin, Arc::clone(&hub)) {
        eprintln!("tokio-uring-peer: admin {}: {err}", args.admin);
        std::process::exit(1);
    }
    let threads: Vec<_> = inboxes
        .into_iter()
        .map(|inbox| {
            let hub = Arc::clone(&hub);
            let listen = args.listen.clone();
            std::thread::spawn(move || {
                tokio_uring::start(async move {
                    let subscribers: Subscribers = Rc::default();
                    for addr in listen {
                        let listener = match reuseport_listener(addr) {
                            Ok(l) => TcpListener::from_std(l),
                            Err(err) => {
                                eprintln!("tokio-uring-peer: listen {addr}: {err}");
                                std::process::exit(1);
                            }
                        };
                        tokio_uring::spawn(accept_loop(
                            listener,
                            Rc::clone(&subscribers),
                            Arc::clone(&hub),
                        ));
                    }
                    while let Ok(publish) = inbox.recv_async().await {
                        deliver(&subscribers, &publish, &hub);
                    }
                });
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
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
        if let Ok((stream, _)) = listener.accept().await {
            tokio_uring::spawn(serve(stream, Rc::clone(&subscribers), Arc::clone(&hub)));
        }
    }
}

async fn serve(stream: TcpStream, subscribers: Subscribers, hub: Arc<Hub>) {
    let _ = stream.set_nodelay(true);
    let stream = Rc::new(stream);
    let mut buf = vec![0u8; READ_BYTES];
    let mut request = Vec::new();
    let (route, response, consumed) = loop {
        let (result, b) = stream.read(buf).await;
        buf = b;
        match result {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        match handshake(&request) {
            Handshake::Partial => {}
            Handshake::Failed(answer) => {
                let _ = stream.write_all(answer.to_vec()).await;
                return;
            }
            Handshake::Done {
                route,
                response,
                consumed,
            } => break (route, response, consumed),
        }
    };
    let conn = Rc::new(Conn {
        stream: Rc::clone(&stream),
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
        let (result, b) = stream.read(buf).await;
        buf = b;
        match result {
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
    // Dropping an in-flight tokio-uring read does not close the socket; shut it down.
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
