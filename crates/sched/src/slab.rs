//! Request storage addressed by small indices, so the per-step loops never hash request ids.

use crate::request::Request;

#[derive(Default)]
pub(crate) struct Slab {
    entries: Vec<Option<Request>>,
    free: Vec<u32>,
}

impl Slab {
    pub fn insert(&mut self, req: Request) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = Some(req);
                i
            }
            None => {
                self.entries.push(Some(req));
                (self.entries.len() - 1) as u32
            }
        }
    }

    /// Panics on a vacant index: every index the scheduler keeps refers to a live request.
    pub fn get(&self, i: u32) -> &Request {
        self.entries[i as usize]
            .as_ref()
            .expect("live request index")
    }

    pub fn get_mut(&mut self, i: u32) -> &mut Request {
        self.entries[i as usize]
            .as_mut()
            .expect("live request index")
    }

    pub fn contains(&self, i: u32) -> bool {
        self.entries.get(i as usize).is_some_and(Option::is_some)
    }

    pub fn remove(&mut self, i: u32) -> Request {
        let req = self.entries[i as usize].take().expect("live request index");
        self.free.push(i);
        req
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Request)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|r| (i as u32, r)))
    }
}
