#[mw::service]
pub trait Svc<T> {
    async fn get(&self) -> u64;
}

fn main() {}
