#[mw::service]
pub trait Svc {
    async fn put(&self, _: u64);
}

fn main() {}
