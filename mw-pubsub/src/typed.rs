//! The typed layer: postcard-encoded values over the raw [`Bytes`] bus.
//!
//! [`Bus::publish_typed`] encodes the value once and publishes the resulting `Bytes` (so fan-out
//! still shares one buffer); [`TypedSubscription`] decodes each event as it is received. A payload
//! that does not decode is returned as [`Error::Decode`] for that one event and the
//! subscription carries on.

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::bus::Bus;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::report::PublishReport;
use crate::subscriber::{SubscribeOptions, Subscription};
use crate::topic::{IntoPattern, IntoTopic, Topic};

pub(crate) fn encode<T: Serialize + ?Sized>(topic: &Topic, value: &T) -> Result<Bytes> {
    postcard::to_stdvec(value)
        .map(Bytes::from)
        .map_err(|source| Error::Encode {
            topic: topic.as_str().to_owned(),
            source,
        })
}

impl Bus {
    /// Encodes `value` with postcard and [`publish`](Bus::publish)es it.
    ///
    /// ```
    /// use mw_pubsub::{Bus, SubscribeOptions};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let bus = Bus::default();
    /// let mut temps = bus.subscribe_typed::<f32>("sensors.*.temp", SubscribeOptions::default())?;
    /// bus.publish_typed("sensors.kitchen.temp", &21.5f32)?;
    /// let reading = temps.recv().await?;
    /// assert_eq!((reading.topic.as_str(), reading.value), ("sensors.kitchen.temp", 21.5));
    /// # Ok::<(), mw_pubsub::Error>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`publish`](Bus::publish), and [`Error::Encode`] if `value` cannot be serialized.
    pub fn publish_typed<T: Serialize + ?Sized>(
        &self,
        topic: impl IntoTopic,
        value: &T,
    ) -> Result<PublishReport> {
        let topic = topic.into_topic()?;
        let payload = encode(&topic, value)?;
        self.publish(topic, payload)
    }

    /// Encodes `value` with postcard and [`publish_retained`](Bus::publish_retained)s it.
    ///
    /// # Errors
    ///
    /// As [`publish_retained`](Bus::publish_retained), and [`Error::Encode`].
    pub fn publish_retained_typed<T: Serialize + ?Sized>(
        &self,
        topic: impl IntoTopic,
        value: &T,
    ) -> Result<PublishReport> {
        let topic = topic.into_topic()?;
        let payload = encode(&topic, value)?;
        self.publish_retained(topic, payload)
    }

    /// [`subscribe`](Bus::subscribe)s and decodes each payload as a `T`.
    ///
    /// # Errors
    ///
    /// As [`subscribe`](Bus::subscribe).
    pub fn subscribe_typed<T: DeserializeOwned>(
        &self,
        pattern: impl IntoPattern,
        options: SubscribeOptions,
    ) -> Result<TypedSubscription<T>> {
        Ok(TypedSubscription {
            inner: self.subscribe(pattern, options)?,
            _type: PhantomData,
        })
    }
}

/// A decoded event from a [`TypedSubscription`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TypedEvent<T> {
    /// The topic it was published on.
    pub topic: Topic,
    /// The decoded payload.
    pub value: T,
    /// Events lost just before this one; see [`Event::dropped_before`].
    pub dropped_before: u64,
}

/// A [`Subscription`] whose payloads are decoded as `T`. Also a [`Stream`] of
/// `Result<TypedEvent<T>>` that yields decode errors as items and ends when the subscription
/// closes. Dropping it unsubscribes.
#[must_use = "a subscription receives nothing once dropped"]
pub struct TypedSubscription<T> {
    inner: Subscription,
    _type: PhantomData<fn() -> T>,
}

pub(crate) fn decode<T: DeserializeOwned>(event: Event) -> Result<TypedEvent<T>> {
    match postcard::from_bytes(&event.payload) {
        Ok(value) => Ok(TypedEvent {
            topic: event.topic,
            value,
            dropped_before: event.dropped_before,
        }),
        Err(source) => Err(Error::Decode {
            topic: event.topic.as_str().to_owned(),
            source,
        }),
    }
}

impl<T: DeserializeOwned> TypedSubscription<T> {
    /// Waits for the next event and decodes it.
    ///
    /// # Errors
    ///
    /// [`Error::Decode`] for an event whose payload is not a `T` (the subscription stays
    /// usable); otherwise as [`Subscription::recv`].
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`Subscription::recv`].
    pub async fn recv(&mut self) -> Result<TypedEvent<T>> {
        decode(self.inner.recv().await?)
    }

    /// The next event if one is buffered, decoded; `Ok(None)` if none is.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    pub fn try_recv(&mut self) -> Result<Option<TypedEvent<T>>> {
        self.inner.try_recv()?.map(decode).transpose()
    }

    /// The underlying raw subscription, for its counters and accessors.
    pub fn raw(&self) -> &Subscription {
        &self.inner
    }

    /// Gives up decoding and returns the raw subscription.
    pub fn into_raw(self) -> Subscription {
        self.inner
    }
}

impl<T: DeserializeOwned> Stream for TypedSubscription<T> {
    type Item = Result<TypedEvent<T>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner)
            .poll_next(cx)
            .map(|e| e.map(decode))
    }
}

impl<T> fmt::Debug for TypedSubscription<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedSubscription")
            .field("type", &std::any::type_name::<T>())
            .field("inner", &self.inner)
            .finish()
    }
}
