//! A token trie flattened in pre-order, walked once per DFA state to compute its mask.
//!
//! Every node stores its depth and the index one past its subtree, so the walk needs no explicit
//! stack of children: a rejected byte skips the whole subtree in O(1), and the DFA state of a
//! node's parent is always `states[depth - 1]`.

#[derive(Clone, Copy, Debug)]
struct Node {
    byte: u8,
    depth: u16,
    /// Index one past the last node of this node's subtree.
    subtree_end: u32,
    /// Tokens whose bytes end exactly here: `token_ids[tok_start..tok_start + tok_count]`.
    tok_start: u32,
    tok_count: u32,
}

/// The trie over the byte strings of every text token of a vocabulary.
#[derive(Clone, Debug)]
pub struct TokenTrie {
    nodes: Vec<Node>,
    token_ids: Vec<u32>,
    max_depth: usize,
}

impl TokenTrie {
    /// Build from `(token id, bytes)` pairs; empty byte strings are skipped.
    pub fn new<'a>(tokens: impl IntoIterator<Item = (u32, &'a [u8])>) -> TokenTrie {
        let mut sorted: Vec<(&[u8], u32)> = tokens
            .into_iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(id, b)| (b, id))
            .collect();
        sorted.sort_unstable();
        let root = Node {
            byte: 0,
            depth: 0,
            subtree_end: 0,
            tok_start: 0,
            tok_count: 0,
        };
        let mut nodes = vec![root];
        let mut token_ids = Vec::with_capacity(sorted.len());
        // `path[d]` is the node at depth d on the current branch.
        let mut path: Vec<usize> = vec![0];
        let mut prev: &[u8] = &[];
        let mut max_depth = 0;
        for (bytes, id) in sorted {
            let common = prev.iter().zip(bytes).take_while(|(a, b)| a == b).count();
            while path.len() > common + 1 {
                let done = path.pop().expect("non-empty path");
                nodes[done].subtree_end = nodes.len() as u32;
            }
            for (i, &byte) in bytes.iter().enumerate().skip(common) {
                let depth = u16::try_from(i + 1).expect("token longer than 65535 bytes");
                nodes.push(Node {
                    byte,
                    depth,
                    subtree_end: 0,
                    tok_start: token_ids.len() as u32,
                    tok_count: 0,
                });
                path.push(nodes.len() - 1);
            }
            let last = *path.last().expect("non-empty path");
            if nodes[last].tok_count == 0 {
                nodes[last].tok_start = token_ids.len() as u32;
            }
            nodes[last].tok_count += 1;
            token_ids.push(id);
            max_depth = max_depth.max(bytes.len());
            prev = bytes;
        }
        while let Some(done) = path.pop() {
            nodes[done].subtree_end = nodes.len() as u32;
        }
        TokenTrie {
            nodes,
            token_ids,
            max_depth,
        }
    }

    /// Number of nodes, root included.
    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Length in bytes of the longest token.
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Walk every token reachable from `root`: `step(state, byte)` returns the next state, or
    /// `None` to prune the subtree; `on_tokens` receives the ids of each reached token string.
    #[inline]
    pub fn walk<S: Copy>(
        &self,
        root: S,
        states: &mut Vec<S>,
        mut step: impl FnMut(S, u8) -> Option<S>,
        mut on_tokens: impl FnMut(&[u32]),
    ) {
        states.clear();
        states.resize(self.max_depth + 1, root);
        let nodes = &self.nodes[..];
        let mut i = 1;
        while i < nodes.len() {
            let node = nodes[i];
            let depth = node.depth as usize;
            match step(states[depth - 1], node.byte) {
                None => i = node.subtree_end as usize,
                Some(next) => {
                    states[depth] = next;
                    if node.tok_count > 0 {
                        let start = node.tok_start as usize;
                        on_tokens(&self.token_ids[start..start + node.tok_count as usize]);
                    }
                    i += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reached(trie: &TokenTrie, allowed: &[u8]) -> Vec<u32> {
        let mut out = Vec::new();
        let mut states = Vec::new();
        let step = |s: (), b: u8| allowed.contains(&b).then_some(s);
        trie.walk((), &mut states, step, |ids| out.extend_from_slice(ids));
        out.sort_unstable();
        out
    }

    #[test]
    fn walk_prunes_subtrees_and_reports_duplicates() {
        let toks: Vec<(u32, &[u8])> = vec![
            (0, b"a"),
            (1, b"ab"),
            (2, b"abc"),
            (3, b"b"),
            (4, b"ab"),
            (5, b""),
            (6, b"ca"),
        ];
        let trie = TokenTrie::new(toks);
        assert_eq!(trie.max_depth(), 3);
        assert_eq!(reached(&trie, b"ab"), vec![0, 1, 3, 4]);
        assert_eq!(reached(&trie, b"abc"), vec![0, 1, 2, 3, 4, 6]);
        assert_eq!(reached(&trie, b"c"), Vec::<u32>::new());
        // root + a, ab, abc, b, c, ca
        assert_eq!(trie.num_nodes(), 7);
    }
}
