#[mw::service]
pub trait Svc {
    async fn put(&self, value: impl Into<u64>);
}

fn main() {}
