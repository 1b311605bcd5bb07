//! A TCP proxy on loopback whose live connections can be cut, for tests
//! of what a dropped link does (the send tests cut SSH logins with it).

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A TCP proxy whose connections can all be cut at once (both sockets shut
/// down, as a dropped link looks to both ends).
pub struct CutProxy {
    /// The loopback port it listens on.
    pub port: u16,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl CutProxy {
    /// Listens on a free loopback port and forwards each connection to
    /// 127.0.0.1:`target`.
    pub fn start(target: u16) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let registry = live.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut reg = registry.lock().unwrap();
                reg.push(client.try_clone().unwrap());
                reg.push(server.try_clone().unwrap());
                drop(reg);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                        let _ = from.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        CutProxy { port, live }
    }

    /// Cuts every connection made so far.
    pub fn cut(&self) {
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}
