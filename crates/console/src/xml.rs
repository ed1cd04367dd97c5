//! Reading the API's XML answers (proto's parser): the console reads the
//! same responses the CLI does.

pub use keycard_proto::xml::XmlNode as Node;

/// Lookups the pages need on top of proto's node.
pub trait Find {
    /// Parse a document; a malformed one reads as empty.
    fn parse(xml: &[u8]) -> Node;
    /// The shallowest descendant named `name` (breadth first: an
    /// instance's own `tagSet`, not its network interface's).
    fn find(&self, name: &str) -> Option<&Node>;
    /// The trimmed text of the first descendant named `name` ("" when absent).
    fn text_of(&self, name: &str) -> String;
    /// The items of the first list element named `list` (IAM's `member`, EC2's `item`).
    fn list<'a>(&'a self, list: &str, item: &'a str) -> Vec<&'a Node>;
}

impl Find for Node {
    fn parse(xml: &[u8]) -> Node {
        keycard_proto::xml::parse_xml(xml).unwrap_or_default()
    }

    fn find(&self, name: &str) -> Option<&Node> {
        let mut level: Vec<&Node> = self.children.iter().collect();
        while !level.is_empty() {
            if let Some(n) = level.iter().find(|c| c.local_name() == name) {
                return Some(n);
            }
            level = level.iter().flat_map(|c| c.children.iter()).collect();
        }
        None
    }

    fn text_of(&self, name: &str) -> String {
        self.find(name)
            .map(|n| n.text.trim().to_string())
            .unwrap_or_default()
    }

    fn list<'a>(&'a self, list: &str, item: &'a str) -> Vec<&'a Node> {
        self.find(list)
            .map(|l| l.children_named(item).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_iam_lists_and_errors() {
        let x = br#"<ListRolesResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/"><ListRolesResult><Roles><member><RoleName>a&lt;b</RoleName></member><member><RoleName>c</RoleName></member></Roles></ListRolesResult></ListRolesResponse>"#;
        let n = Node::parse(x);
        let names: Vec<String> = n
            .list("Roles", "member")
            .iter()
            .map(|m| m.text_of("RoleName"))
            .collect();
        assert_eq!(names, vec!["a<b", "c"]);
        let e = Node::parse(
            b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>",
        );
        assert_eq!(e.text_of("Code"), "AccessDenied");
        let i = Node::parse(b"<item><nis><ni><tagSet/></ni></nis><tagSet><item><key>Name</key></item></tagSet></item>");
        assert_eq!(i.list("tagSet", "item").len(), 1);
    }
}
