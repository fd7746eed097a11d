import Crypto
import ProxyModel
import Testing

@testable import AuditCore

@Suite("Audit chain sealing")
struct AuditChainTests {
    @Test("each line is canonical JSON whose hash anyone can recompute from the parsed line; seq and prev_hash chain")
    func sealing() {
        var chain = AuditChain(instance: "proxy-1")
        var previous = AuditChain.genesis
        for i in 0..<5 {
            let sealed = chain.seal(Fixture.event(i))
            let members = Fixture.members(sealed.line)
            #expect(members["seq"] == .integer(Int64(i)))
            #expect(members["prev_hash"] == .string(previous))
            #expect(members["schema"] == .integer(1))
            #expect(members["instance"] == .string("proxy-1"))
            #expect(members["kind"] == .string(AuditKind.httpRequest))
            #expect(members["time"] == .string(Fixture.event(i).time.rfc3339))
            #expect(members["request_id"] == .string("a-\(i)"))
            #expect(members["hash"] == .string(sealed.hash))
            #expect(sealed.seq == UInt64(i))
            #expect(sealed.id == sealed.hash)
            // The hash is SHA-256 of the canonical members without "hash", recomputed independently here.
            var withoutHash = members
            withoutHash["hash"] = nil
            let digest = SHA256.hash(data: CanonicalJSON.encode(.object(withoutHash)))
            #expect(sealed.hash == digest.map { String($0, radix: 16).leftPadded(to: 2) }.joined())
            #expect(AuditChain.hash(members: members, hmacKey: nil) == sealed.hash)
            // The line is exactly the canonical form of its members.
            #expect(CanonicalJSON.encode(.object(members)) == sealed.line)
            #expect(!sealed.line.contains(UInt8(ascii: "\n")))
            previous = sealed.hash
        }
        #expect(chain.nextSeq == 5)
        #expect(chain.head == previous)
    }

    @Test("a chain continues from a persisted head")
    func continues() {
        var first = AuditChain(instance: "proxy-1")
        let a = first.seal(Fixture.event(0))
        var resumed = AuditChain(instance: "proxy-1", nextSeq: 1, head: a.hash)
        var straight = first
        #expect(resumed.seal(Fixture.event(1)) == straight.seal(Fixture.event(1)))
    }

    @Test("members named like the chain's own are overwritten by the chain, never trusted from the event")
    func reservedMembers() {
        var chain = AuditChain(instance: "proxy-1")
        let sealed = chain.seal(
            AuditEvent(
                kind: "x",
                time: Fixture.start,
                fields: [
                    "seq": .integer(99), "hash": .string("forged"), "instance": .string("other"), "schema": .integer(7),
                ]
            )
        )
        let members = Fixture.members(sealed.line)
        #expect(members["seq"] == .integer(0))
        #expect(members["instance"] == .string("proxy-1"))
        #expect(members["schema"] == .integer(1))
        #expect(members["hash"] == .string(sealed.hash))
    }

    @Test("the HMAC variant differs from the plain hash and verifies only with its key")
    func hmac() {
        let key = Array("k".utf8) + Array(repeating: 1, count: 31)
        var plain = AuditChain(instance: "proxy-1")
        var keyed = AuditChain(instance: "proxy-1", hmacKey: key)
        let p = plain.seal(Fixture.event(1))
        let k = keyed.seal(Fixture.event(1))
        #expect(p.hash != k.hash)
        let members = Fixture.members(k.line)
        var withoutHash = members
        withoutHash["hash"] = nil
        let mac = HMAC<SHA256>.authenticationCode(
            for: CanonicalJSON.encode(.object(withoutHash)),
            using: SymmetricKey(data: key)
        )
        #expect(k.hash == Array(mac).map { String($0, radix: 16).leftPadded(to: 2) }.joined())
        #expect(AuditChain.hash(members: members, hmacKey: key) == k.hash)
        #expect(AuditChain.hash(members: members, hmacKey: nil) != k.hash)
        #expect(AuditChain.hash(members: members, hmacKey: Array(key.dropLast())) != k.hash)
    }

    @Test("a request record seals with its members and no empty optionals")
    func requestRecord() {
        var chain = AuditChain(instance: "proxy-1")
        let record = HTTPRequestRecord(
            requestID: "r1",
            listener: "web",
            route: "api",
            decision: .deny,
            reason: "policy_denied",
            rule: 2,
            clientAddress: "10.0.0.1",
            clientPort: 5555,
            method: "GET",
            host: "a.example.com",
            path: "/x",
            query: "token=REDACTED",
            status: 403,
            durationMicros: 12
        )
        let sealed = chain.seal(AuditEvent(kind: AuditKind.httpRequest, time: Fixture.start, payload: .request(record)))
        let members = Fixture.members(sealed.line)
        #expect(members["decision"] == .string("deny"))
        #expect(members["rule"] == .integer(2))
        #expect(members["client"] == .object(["address": .string("10.0.0.1"), "port": .integer(5555)]))
        #expect(members["query"] == .string("token=REDACTED"))
        #expect(members["tls"] == nil)
        #expect(members["aborted"] == nil)
        #expect(AuditChain.hash(members: members, hmacKey: nil) == sealed.hash)
    }

    @Test("the persisted head round-trips and refuses what is not a head")
    func head() {
        let head = AuditHead(
            instance: "proxy-1",
            seq: 41,
            hash: String(repeating: "ab", count: 32),
            time: Fixture.start
        )
        #expect(head.json.last == UInt8(ascii: "\n"))
        #expect(AuditHead(json: head.json) == head)
        #expect(
            AuditHead(json: Array(#"{"instance":"p","seq":1,"hash":"short","time":"2026-01-01T00:00:00Z"}"#.utf8))
                == nil
        )
        #expect(
            AuditHead(
                json: Array(#"{"instance":"p","seq":-1,"hash":"\#(head.hash)","time":"2026-01-01T00:00:00Z"}"#.utf8)
            ) == nil
        )
        #expect(
            AuditHead(
                json: Array(
                    #"{"instance":"p","seq":1,"seq":2,"hash":"\#(head.hash)","time":"2026-01-01T00:00:00Z"}"#.utf8
                )
            ) == nil
        )
        #expect(AuditHead(json: Array("garbage".utf8)) == nil)
        let notHex = String(repeating: "zz", count: 32)
        #expect(
            AuditHead(json: Array(#"{"instance":"p","seq":1,"hash":"\#(notHex)","time":"2026-01-01T00:00:00Z"}"#.utf8))
                == nil
        )
    }
}

extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - self.count)) + self }
}
