import PolicyCore
import Testing

@Suite("Host and path patterns")
struct PatternTests {
    @Test(
        "host patterns",
        arguments: [
            ("airflow.example.com", HostPattern.exact("airflow.example.com")),
            ("Airflow.Example.COM", .exact("airflow.example.com")),
            ("airflow.example.com.", .exact("airflow.example.com")),
            ("localhost", .exact("localhost")),
            ("10.0.0.1", .exact("10.0.0.1")),
            ("[::1]", .exact("[::1]")),
            ("*.a.example.com", .wildcard(suffix: ".a.example.com")),
            ("*.Internal.Example.com.", .wildcard(suffix: ".internal.example.com")),
            ("*.com", .wildcard(suffix: ".com")),
        ]
    )
    func hostPatterns(_ text: String, _ expected: HostPattern) {
        #expect(HostPattern.parse(text) == .success(expected))
    }

    @Test(
        "refused host patterns",
        arguments: [
            ("", "empty"),
            ("*", "leave out the host"),
            ("a.*.com", "whole first label"),
            ("*a.com", "whole first label"),
            ("a*.com", "whole first label"),
            ("*.*.com", "whole first label"),
            ("**.com", "whole first label"),
            ("example.com*", "whole first label"),
            ("example.com:8080", "port"),
            ("*.example.com:8080", "port"),
            ("[::1]:80", "port"),
            ("a..b", "empty label"),
            (".example.com", "empty label"),
            ("*.", "empty label"),
            ("*..com", "empty label"),
            ("exa mple.com", "not a valid host"),
            ("user@example.com", "not a valid host"),
            ("ex/ample", "not a valid host"),
            ("*.[::1]", "IP literal"),
        ]
    )
    func refusedHostPatterns(_ text: String, _ messagePart: String) {
        guard case .failure(let error) = HostPattern.parse(text) else {
            Issue.record("\(text) should be refused")
            return
        }
        #expect(error.message.contains(messagePart), "\(error.message)")
        #expect(error.description == error.message)
    }

    @Test func hostPatternDescriptions() {
        #expect(HostPattern.any.description == "*")
        #expect(HostPattern.exact("a.example.com").description == "a.example.com")
        #expect(HostPattern.wildcard(suffix: ".example.com").description == "*.example.com")
        // description round-trips through parse
        for text in ["*.example.com", "a.example.com"] {
            let pattern = try? HostPattern.parse(text).get()
            #expect(pattern?.description == text)
        }
    }

    @Test(
        "path patterns",
        arguments: [
            ("/*", PathPattern.prefix("")),
            ("/admin/*", .prefix("/admin")),
            ("/api/v1/*", .prefix("/api/v1")),
            ("/admin", .exact("/admin")),
            ("/", .exact("/")),
            ("/admin/", .exact("/admin/")),
            ("/a%3Bb", .exact("/a%3Bb")),
            ("/~user/*", .prefix("/~user")),
        ]
    )
    func pathPatterns(_ text: String, _ expected: PathPattern) {
        #expect(PathPattern.parse(text) == .success(expected))
    }

    @Test(
        "refused path patterns",
        arguments: [
            ("", "must start with \"/\""),
            ("admin", "must start with \"/\""),
            ("*", "must start with \"/\""),
            ("/admin*", "only allowed as a final \"/*\""),
            ("/*/x", "only allowed as a final \"/*\""),
            ("/a/*/b/*", "only allowed as a final \"/*\""),
            ("/**", "only allowed as a final \"/*\""),
            ("/a/../b", "must be normalized (did you mean \"/b\""),
            ("/%61dmin", "must be normalized (did you mean \"/admin\""),
            ("/a%3bb", "must be normalized (did you mean \"/a%3Bb\""),
            ("//admin/*", "must be normalized (did you mean \"/admin/*\""),
            ("/admin/./*", "must be normalized (did you mean \"/admin/*\""),
            ("/admin//*", "must be normalized (did you mean \"/admin/*\""),
            ("//*", "must be normalized (did you mean \"/*\""),
            ("/a;b", "path_parameter"),
            ("/../*", "path_above_root"),
            ("/a%2fb", "path_encoded_slash"),
            ("/a b", "path_invalid_character"),
            ("/a?b", "path_invalid_character"),
        ]
    )
    func refusedPathPatterns(_ text: String, _ messagePart: String) {
        guard case .failure(let error) = PathPattern.parse(text) else {
            Issue.record("\(text) should be refused")
            return
        }
        #expect(error.message.contains(messagePart), "\(error.message)")
    }

    @Test(
        "path matching",
        arguments: [
            (PathPattern.prefix("/admin"), "/admin", true),
            (.prefix("/admin"), "/admin/", true),
            (.prefix("/admin"), "/admin/x", true),
            (.prefix("/admin"), "/admin/x/y", true),
            (.prefix("/admin"), "/administrator", false),
            (.prefix("/admin"), "/admi", false),
            (.prefix("/admin"), "/", false),
            (.prefix("/admin"), "/x/admin", false),
            (.prefix(""), "/", true),
            (.prefix(""), "/anything/at/all", true),
            (.exact("/admin"), "/admin", true),
            (.exact("/admin"), "/admin/", false),
            (.exact("/admin"), "/admin/x", false),
            (.exact("/admin"), "/Admin", false),
            (.exact("/"), "/", true),
            (.exact("/"), "/a", false),
        ]
    )
    func matching(_ pattern: PathPattern, _ path: String, _ expected: Bool) {
        #expect(pattern.matches(path) == expected)
    }

    @Test func pathPatternDescriptionsRoundTrip() throws {
        for text in ["/*", "/admin/*", "/admin", "/"] {
            let pattern = try PathPattern.parse(text).get()
            #expect(pattern.description == text)
        }
    }
}
