#[mw::service]
pub trait Svc {
    async fn get(&self) -> u64
    where
        Self: Sized;
}

fn main() {}
