use std::borrow::Cow;

#[mw::service]
pub trait Svc {
    async fn greet(&self, name: Cow<'_, str>) -> String;
}

fn main() {}
