#[mw::service]
pub trait Svc<'a> {
    async fn get(&self) -> u64;
}

fn main() {}
