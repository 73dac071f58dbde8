#[mw::service]
pub trait Svc {
    async fn get<T>(&self) -> u64;
}

fn main() {}
