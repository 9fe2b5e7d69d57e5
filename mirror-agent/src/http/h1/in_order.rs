//! Requests and responses paired per connection, in order.
//!
//! HTTP/1.x answers the requests of a connection in the order they came
//! (pipelining included), so the n-th final response answers the n-th
//! request. [`InOrder`] keeps, per connection, what each request left for
//! its response (`T`: the comparison's exchange, a recording's payload id)
//! and hands it to the response that answers it. Once a request of a
//! connection is lost (a gap, a skipped request, a join in the middle) or a
//! response cannot be framed, the order is no longer known: every request
//! of that connection from then on is [`Unanswered::Unpaired`], never
//! paired with the wrong response.

use std::collections::{HashMap, VecDeque};

use crate::capture::FlowKey;
use crate::http::response::{Answers, Unanswered};

struct Connection<T> {
    waiting: VecDeque<(T, Answers)>,
    /// The order was lost: nothing more is paired on this connection.
    broken: bool,
    /// Insertion order, for eviction.
    born: u64,
}

/// The per-connection queues (see the module documentation). Every method
/// that gives up waiting requests hands each to `unanswered`.
pub struct InOrder<T> {
    connections: HashMap<FlowKey, Connection<T>>,
    max_connections: usize,
    born: u64,
    /// Responses that came with no request waiting.
    pub unpaired_responses: u64,
}

impl<T> InOrder<T> {
    /// Tracks at most `max_connections` at once; beyond it the oldest go
    /// (their requests are unpaired).
    pub fn new(max_connections: usize) -> Self {
        Self {
            connections: HashMap::new(),
            max_connections: max_connections.max(1),
            born: 0,
            unpaired_responses: 0,
        }
    }

    fn connection(
        &mut self,
        key: FlowKey,
        unanswered: &mut impl FnMut(T, Unanswered),
    ) -> &mut Connection<T> {
        if !self.connections.contains_key(&key) && self.connections.len() >= self.max_connections {
            let oldest = self
                .connections
                .iter()
                .min_by_key(|(_, c)| c.born)
                .map(|(k, _)| *k);
            if let Some(gone) = oldest.and_then(|k| self.connections.remove(&k)) {
                for (item, _) in gone.waiting {
                    unanswered(item, Unanswered::Unpaired);
                }
            }
        }
        self.born += 1;
        let born = self.born;
        self.connections.entry(key).or_insert_with(|| Connection {
            waiting: VecDeque::new(),
            broken: false,
            born,
        })
    }

    /// The next request on `key` waits for its response (or is unpaired at
    /// once if the connection's order is lost).
    pub fn push(
        &mut self,
        key: FlowKey,
        item: T,
        answers: Answers,
        mut unanswered: impl FnMut(T, Unanswered),
    ) {
        let connection = self.connection(key, &mut unanswered);
        if connection.broken {
            unanswered(item, Unanswered::Unpaired);
        } else {
            connection.waiting.push_back((item, answers));
        }
    }

    /// What the next response on `key` answers, if its request is known.
    pub fn peek(&self, key: &FlowKey) -> Option<Answers> {
        let connection = self.connections.get(key)?;
        connection.waiting.front().map(|(_, answers)| *answers)
    }

    /// A response came on `key`: the request it answers. `None`: the
    /// connection's order is lost, or no request waits (then it is lost
    /// from now on, and counted in [`Self::unpaired_responses`]).
    pub fn pop(&mut self, key: FlowKey, mut unanswered: impl FnMut(T, Unanswered)) -> Option<T> {
        let connection = self.connection(key, &mut unanswered);
        if connection.broken {
            return None;
        }
        match connection.waiting.pop_front() {
            Some((item, _)) => Some(item),
            None => {
                // A response to a request never seen (lost, or still held
                // by the request side's reassembly): the order is unknown.
                self.unpaired_responses += 1;
                self.break_connection(key, unanswered);
                None
            }
        }
    }

    /// One response on `key` was lost, the framing goes on: the request it
    /// answers gets none.
    pub fn lose_one(&mut self, key: FlowKey, mut unanswered: impl FnMut(T, Unanswered)) {
        let connection = self.connection(key, &mut unanswered);
        if connection.broken {
            return;
        }
        match connection.waiting.pop_front() {
            Some((item, _)) => unanswered(item, Unanswered::NoResponse),
            None => self.break_connection(key, unanswered),
        }
    }

    /// The connection's order is lost: what waits, and what comes, is
    /// unpaired.
    pub fn break_connection(&mut self, key: FlowKey, mut unanswered: impl FnMut(T, Unanswered)) {
        let connection = self.connection(key, &mut unanswered);
        connection.broken = true;
        for (item, _) in std::mem::take(&mut connection.waiting) {
            unanswered(item, Unanswered::Unpaired);
        }
    }

    /// The connection ended: what still waits gets no response.
    pub fn end(&mut self, key: &FlowKey, mut unanswered: impl FnMut(T, Unanswered)) {
        if let Some(connection) = self.connections.remove(key) {
            for (item, _) in connection.waiting {
                unanswered(item, Unanswered::NoResponse);
            }
        }
    }

    /// Every connection ends (the end of a file): what waits gets no
    /// response.
    pub fn end_all(&mut self, mut unanswered: impl FnMut(T, Unanswered)) {
        for (_, connection) in self.connections.drain() {
            for (item, _) in connection.waiting {
                unanswered(item, Unanswered::NoResponse);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    fn key(client_port: u16) -> FlowKey {
        FlowKey {
            client: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 1), client_port)),
            server: SocketAddr::from((Ipv4Addr::new(10, 200, 0, 2), 80)),
        }
    }

    #[test]
    fn responses_pair_in_order_until_the_order_is_lost() {
        let (a, b) = (key(1), key(2));
        let mut pairs = InOrder::new(8);
        let mut gone = Vec::new();
        let get = Answers::default();
        let head = Answers {
            head: true,
            connect: false,
        };
        pairs.push(a, 1, get, |i, why| gone.push((i, why)));
        pairs.push(a, 2, head, |i, why| gone.push((i, why)));
        pairs.push(b, 10, get, |i, why| gone.push((i, why)));
        assert_eq!(pairs.pop(a, |i, why| gone.push((i, why))), Some(1));
        assert_eq!(pairs.peek(&a), Some(head));
        pairs.lose_one(a, |i, why| gone.push((i, why)));
        assert_eq!(gone, [(2, Unanswered::NoResponse)]);
        // A response with nothing waiting: connection a is lost for good.
        assert_eq!(pairs.pop(a, |i, why| gone.push((i, why))), None);
        assert_eq!(pairs.unpaired_responses, 1);
        pairs.push(a, 3, get, |i, why| gone.push((i, why)));
        assert_eq!(gone[1], (3, Unanswered::Unpaired));
        assert_eq!(pairs.pop(b, |i, why| gone.push((i, why))), Some(10));
        pairs.push(b, 11, get, |i, why| gone.push((i, why)));
        pairs.end_all(|i, why| gone.push((i, why)));
        assert_eq!(gone[2], (11, Unanswered::NoResponse));
    }

    #[test]
    fn beyond_the_cap_the_oldest_connection_goes_unpaired() {
        let mut pairs = InOrder::new(2);
        let mut gone = Vec::new();
        for (n, flow) in [1, 2, 3].into_iter().enumerate() {
            pairs.push(key(flow), n, Answers::default(), |i, why| {
                gone.push((i, why))
            });
        }
        assert_eq!(gone, [(0, Unanswered::Unpaired)]);
        assert_eq!(pairs.peek(&key(1)), None);
        assert!(pairs.peek(&key(3)).is_some());
    }
}
