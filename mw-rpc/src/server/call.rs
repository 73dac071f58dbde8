//! One call on a connection, from its frame to its answer: admission (refusals as
//! PROTOCOL.md §4.2 orders them), login and permission checks, dispatch to the service,
//! the queue, running (a fast path for handlers done on their first poll), and the answer.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::{AbortHandle, Abortable, BoxFuture};
use futures::FutureExt;
use mw_core::{flags, Frame, FrameKind};
use tokio::sync::Semaphore;

use super::call_state::{panic_message, CallState, Outcome, Queued};
use super::connection::ConnState;
use super::stream::run_stream;
use crate::error::ServerError;
use crate::metrics::CallLabels;
use crate::service::{Handler, Service};
use crate::wire::{self, code, CallHeader};

/// What a call's frame asks for besides the call itself.
#[derive(Clone, Copy)]
struct CallFrame {
    id: u64,
    kind: FrameKind,
    flags: u8,
    ack_receipt: bool,
    ack_delivery: bool,
}

impl CallFrame {
    fn of(frame: &Frame) -> Self {
        CallFrame {
            id: frame.id,
            kind: frame.kind,
            flags: frame.flags,
            ack_receipt: frame.flags & flags::ACK_RECEIPT != 0,
            ack_delivery: frame.flags & flags::ACK_DELIVERY != 0,
        }
    }

    /// Whether the caller hears about a refusal: a `Request`, or a `Oneway` asking for an
    /// acknowledgement.
    fn wants_reply(&self) -> bool {
        self.kind == FrameKind::Request || self.ack_receipt || self.ack_delivery
    }

    /// A `Request` with the `STREAM` flag (ignored on a `Oneway`).
    fn is_stream(&self) -> bool {
        self.flags & flags::STREAM != 0 && self.kind == FrameKind::Request
    }
}

/// A refusal: the error code and message the caller gets.
type Refusal = (u16, String);

impl ConnState {
    pub(super) fn on_call(&mut self, frame: Frame) {
        let call = CallFrame::of(&frame);
        if let Err((c, msg)) = self.admit(&call) {
            return self.refuse(&call, c, &msg);
        }
        let (header, args) = match wire::parse_call(frame.body) {
            Ok(x) => x,
            Err(msg) => return self.refuse(&call, code::BAD_REQUEST, &msg),
        };
        if let Some(auth) = &self.shared.config.auth {
            if header.service.as_str() == crate::auth::AUTH_SERVICE {
                if call.kind != FrameKind::Request {
                    return self.refuse(&call, code::BAD_REQUEST, "login must be a request");
                }
                return self.login(call.id, args, auth.clone());
            }
            if let Err((c, msg)) = self.permit(&header) {
                return self.refuse(&call, c, &msg);
            }
        }
        let (service, handler) = match self.dispatch(&header, args) {
            Ok(x) => x,
            Err((c, msg)) => return self.refuse(&call, c, &msg),
        };
        if call.is_stream() != matches!(handler, Handler::Stream(_)) {
            let msg = if call.is_stream() {
                "method is not a streaming method"
            } else {
                "method is a streaming method; call it with the STREAM flag"
            };
            return self.refuse(&call, code::PROTOCOL, msg);
        }
        // Delivery implies receipt: one acknowledgement, at the later point.
        if call.kind == FrameKind::Oneway && call.ack_receipt && !call.ack_delivery {
            let _ = self.write_buf.push(FrameKind::Ack, 0, call.id, &[]);
        }
        let measured = self.measure(&**service, &header);
        self.accept(&call, &header, handler, measured);
    }

    /// Tells the caller why its call is not run, if it asked to hear.
    fn refuse(&self, call: &CallFrame, code: u16, msg: &str) {
        if call.wants_reply() {
            self.error(call.id, code, msg);
        } else {
            tracing::debug!(
                id = call.id,
                code,
                msg,
                "one-way call refused (the caller asked for no reply)"
            );
        }
    }

    /// Whether the connection takes the call at all: a usable id, not draining, room in
    /// the queue.
    fn admit(&self, call: &CallFrame) -> Result<(), Refusal> {
        if call.id == 0 {
            return Err((code::PROTOCOL, "call id 0 is reserved".into()));
        }
        if self.calls.contains_key(&call.id) {
            return Err((
                code::PROTOCOL,
                format!("call id {} is already in use on this connection", call.id),
            ));
        }
        if self.draining {
            return Err((
                code::SHUTTING_DOWN,
                "server is shutting down; the call was not run".into(),
            ));
        }
        if self.queued.len() >= self.shared.config.max_queued {
            return Err((
                code::OVERLOADED,
                format!(
                    "{} calls running and {} queued on this connection; the call was not run",
                    self.inflight.len(),
                    self.queued.len()
                ),
            ));
        }
        Ok(())
    }

    /// On a server with logins: whether the connection's user may call the service.
    fn permit(&self, header: &CallHeader) -> Result<(), Refusal> {
        match self.identity.get() {
            None => Err((
                code::UNAUTHENTICATED,
                "authentication required: this server admits logged-in users only \
                 (the CLI's --user and --password, or --token)"
                    .into(),
            )),
            Some(who) if !who.may_call(&header.service) => Err((
                code::PERMISSION_DENIED,
                format!(
                    "user {:?} may not call service {}",
                    who.user, header.service
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Finds the service and method and decodes the arguments into a handler; a
    /// logged-in user's handler runs with their identity at hand, for the service's own
    /// permission checks (`auth::check`).
    fn dispatch(
        &self,
        header: &CallHeader,
        args: Bytes,
    ) -> Result<(&Arc<dyn Service>, Handler), Refusal> {
        let service = self.shared.services.find(&header.service, header.version)?;
        let handler = service.call(header.method, args).map_err(|e| match &e {
            ServerError::UnknownMethod(m) => (
                code::UNKNOWN_METHOD,
                format!("service {} has no method number {m}", service.id()),
            ),
            ServerError::BadArguments(_) => (code::BAD_REQUEST, e.to_string()),
            _ => (code::INTERNAL, e.to_string()),
        })?;
        let handler = match self.identity.get() {
            None => handler,
            Some(who) => {
                let who = who.clone();
                match handler {
                    Handler::Unary(fut) => Handler::Unary(Box::pin(crate::auth::scope(who, fut))),
                    Handler::Stream(stream) => {
                        Handler::Stream(Box::pin(crate::auth::ScopedStream { who, stream }))
                    }
                }
            }
        };
        Ok((service, handler))
    }

    /// On a measured server: counts the call as accepted, and names it for its metrics.
    fn measure(
        &self,
        service: &dyn Service,
        header: &CallHeader,
    ) -> Option<(CallLabels, std::time::Instant)> {
        self.shared.metrics.as_ref().map(|m| {
            m.accepted();
            let method = service
                .methods()
                .iter()
                .find(|m| m.id == header.method)
                .map_or("?", |m| m.name);
            let labels: CallLabels = [("service", service.id().name), ("method", method)];
            (labels, std::time::Instant::now())
        })
    }

    /// Takes the call on: records it, queues it, and starts what fits.
    fn accept(
        &mut self,
        call: &CallFrame,
        header: &CallHeader,
        handler: Handler,
        measured: Option<(CallLabels, std::time::Instant)>,
    ) {
        let credits = call.is_stream().then(|| Arc::new(Semaphore::new(0)));
        self.calls.insert(
            call.id,
            CallState {
                abort: None,
                credits,
                awaits_result: call.kind == FrameKind::Request,
                measured,
            },
        );
        // The deadline runs from arrival: time spent queued counts against it. A one-way
        // call's deadline bounds only the caller's wait for its acknowledgement; once
        // acknowledged nobody waits, so the handler is not stopped by it (a caller that
        // gives up before the acknowledgement sends a Cancel instead).
        let deadline = (header.deadline_ms > 0 && call.kind == FrameKind::Request).then(|| {
            tokio::time::Instant::now() + Duration::from_millis(header.deadline_ms as u64)
        });
        self.queued.push_back(Queued {
            id: call.id,
            kind: call.kind,
            frame_flags: call.flags,
            deadline,
            handler,
        });
        if let Some(m) = &self.shared.metrics {
            m.queued(1);
        }
        self.start_queued();
    }

    pub(super) fn start_queued(&mut self) {
        while self.inflight.len() < self.shared.config.max_in_flight {
            let Some(q) = self.queued.pop_front() else {
                break;
            };
            if let Some(m) = &self.shared.metrics {
                m.queued(-1);
            }
            self.start(q);
        }
    }

    fn start(&mut self, q: Queued) {
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Queued {
            id,
            kind,
            frame_flags,
            deadline,
            mut handler,
        } = q;
        // A call whose deadline passed while it waited in the queue is not run at all: the
        // caller has given up, and running it would only waste the slot.
        if deadline.is_some_and(|at| tokio::time::Instant::now() >= at) {
            self.finish(id, Outcome::DeadlineExceeded);
            return;
        }
        let mut ack_delivery = kind == FrameKind::Oneway && frame_flags & flags::ACK_DELIVERY != 0;
        if self.shared.iterative.is_none() {
            if let Some(outcome) = self.poll_once(id, kind, &mut handler, &mut ack_delivery) {
                self.finish(id, outcome);
                return;
            }
        }
        self.run_call(id, kind, handler, ack_delivery, deadline);
    }

    /// The fast path: most handlers finish on their first poll (no I/O, no waiting). Runs
    /// a unary handler once, now, sparing the abort handle, the in-flight slot, the
    /// deadline timer and their allocations when it is done. A handler still pending
    /// after this poll (`None`) takes the general path, which polls it again with a real
    /// waker (the noop waker registered here is replaced then).
    fn poll_once(
        &mut self,
        id: u64,
        kind: FrameKind,
        handler: &mut Handler,
        ack_delivery: &mut bool,
    ) -> Option<Outcome> {
        let Handler::Unary(fut) = handler else {
            return None;
        };
        if *ack_delivery {
            let _ = self.write_buf.push(FrameKind::Ack, 0, id, &[]);
            *ack_delivery = false;
        }
        let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
        match polled {
            Ok(std::task::Poll::Pending) => None,
            Ok(std::task::Poll::Ready(r)) if kind == FrameKind::Request => Some(Outcome::Reply(r)),
            Ok(std::task::Poll::Ready(_)) => Some(Outcome::Quiet),
            Err(p) => Some(panicked(id, kind, &p)),
        }
    }

    /// The general path: the call runs as a future of the connection's task, abortable,
    /// under its deadline, one at a time server-wide in iterative mode.
    fn run_call(
        &mut self,
        id: u64,
        kind: FrameKind,
        handler: Handler,
        ack_delivery: bool,
        deadline: Option<tokio::time::Instant>,
    ) {
        let write_buf = self.write_buf.clone();
        let iterative = self.shared.iterative.clone();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let credits = call.credits.clone();
        let shutdown = self.shutdown.clone();
        let run = async move {
            // Held for the whole call in iterative mode: one call at a time, server-wide.
            let _turn = match &iterative {
                Some(sem) => Some(sem.acquire().await),
                None => None,
            };
            if ack_delivery {
                let _ = write_buf.push(FrameKind::Ack, 0, id, &[]);
            }
            match handler {
                Handler::Unary(fut) => match AssertUnwindSafe(fut).catch_unwind().await {
                    Ok(r) if kind == FrameKind::Request => Outcome::Reply(r),
                    Ok(_) => Outcome::Quiet,
                    Err(p) => panicked(id, kind, &p),
                },
                Handler::Stream(items) => {
                    run_stream(id, items, credits, &write_buf, shutdown).await
                }
            }
        };
        let (abort, reg) = AbortHandle::new_pair();
        call.abort = Some(abort);
        let run = Abortable::new(run, reg);
        let fut: BoxFuture<'static, (u64, Outcome)> = match deadline {
            Some(at) => async move {
                match tokio::time::timeout_at(at, run).await {
                    Ok(Ok(o)) => (id, o),
                    Ok(Err(_)) => (id, Outcome::Aborted),
                    Err(_) => (id, Outcome::DeadlineExceeded),
                }
            }
            .boxed(),
            None => run
                .map(move |r| (id, r.unwrap_or(Outcome::Aborted)))
                .boxed(),
        };
        self.inflight.push(fut);
    }

    /// Answers a finished call (and counts it).
    pub(super) fn finish(&mut self, id: u64, outcome: Outcome) {
        let call = self.calls.remove(&id);
        if let (Some(m), Some((labels, arrived))) =
            (&self.shared.metrics, call.and_then(|c| c.measured))
        {
            let label = match &outcome {
                Outcome::Reply(Ok(_)) | Outcome::Quiet => "ok",
                Outcome::Reply(Err(_)) => "failed",
                Outcome::DeadlineExceeded => "deadline_exceeded",
                Outcome::Aborted | Outcome::ShuttingDown => "cancelled",
            };
            m.finished(labels, label, arrived.elapsed());
        }
        match outcome {
            Outcome::Reply(Ok(body)) => {
                if let Err(e) = self.write_buf.push(FrameKind::Response, 0, id, &body) {
                    // Too large for a frame: the caller must hear why, not time out.
                    self.error(id, code::INTERNAL, &format!("result cannot be sent: {e}"));
                }
            }
            Outcome::Reply(Err(e)) => {
                let c = match e {
                    ServerError::BadArguments(_) => code::BAD_REQUEST,
                    ServerError::UnknownMethod(_) => code::UNKNOWN_METHOD,
                    ServerError::Unauthenticated(_) => code::UNAUTHENTICATED,
                    _ => code::INTERNAL,
                };
                self.error(id, c, &e.to_string());
            }
            Outcome::DeadlineExceeded => self.error(
                id,
                code::DEADLINE_EXCEEDED,
                "deadline exceeded on the server",
            ),
            Outcome::ShuttingDown => self.error(
                id,
                code::SHUTTING_DOWN,
                "server is shutting down; the stream was ended",
            ),
            // Cancelled by the client (it no longer listens) or already answered.
            Outcome::Aborted | Outcome::Quiet => {}
        }
    }
}

/// The outcome of a handler that panicked: an `INTERNAL` error for a request; for a
/// one-way call nobody waits, so only a log line.
fn panicked(id: u64, kind: FrameKind, p: &Box<dyn std::any::Any + Send>) -> Outcome {
    if kind == FrameKind::Request {
        Outcome::Reply(Err(ServerError::Panicked(panic_message(p))))
    } else {
        tracing::warn!(id, panic = %panic_message(p), "one-way handler panicked");
        Outcome::Quiet
    }
}
