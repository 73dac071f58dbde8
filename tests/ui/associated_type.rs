#[mw::service]
pub trait Svc {
    type Item;
    async fn get(&self) -> u64;
}

fn main() {}
