/* Every luacme.core binding under memory exhaustion. Each snippet below
 * runs again and again in a fresh Lua state whose allocator refuses the
 * k-th allocation (k = 0, 1, 2, ... until the snippet gets through), so
 * Lua raises "not enough memory" at every point where the binding can
 * allocate. A binding that raises while C-owned memory or an OpenSSL
 * object is held only in a C local leaks it: the sanitizer build's
 * LeakSanitizer reports that at exit and fails the test. In every build
 * the snippet must either finish or fail with an error (never crash),
 * and a run that got through must give the expected output. */
#include <stdlib.h>

#include <lua.h>
#include <lauxlib.h>

#include "check.h"
#include "lua_bind.h"

/* Allocations (new blocks or growth) still allowed; -1: no limit. */
static long budget = -1;

static void *
l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    /* osize is a type tag when ptr is NULL: any new block counts. */
    if (budget >= 0 && (ptr == NULL || nsize > osize)) {
        if (budget == 0)
            return NULL;
        budget--;
    }
    return realloc(ptr, nsize);
}

/* Globals every snippet may use, set up with no limit. */
static const char setup[] =
    "core = require 'luacme.core'\n"
    "local function slurp(p)\n"
    "  local f = assert(io.open(p, 'rb'))\n"
    "  local s = f:read('a'); f:close(); return s\n"
    "end\n"
    "EC = slurp('tests/fixtures/keys/go-testkey-ec256.pem')\n"
    "RSA = slurp('tests/fixtures/keys/go-testkey-rsa.pem')\n"
    "CERT = slurp('tests/fixtures/x509/rfc9773.pem')\n"
    "TMP = os.getenv('TMPDIR') or '/tmp'\n"
    "TMP = TMP .. '/luacme-oom-' .. core.getpid()\n"
    "assert(core.mkdir_p(TMP))\n"
    "B64 = core.b64url_encode(string.rep('\\1\\2\\3', 3000))\n"
    "DNS = '\\0\\1\\129\\128\\0\\1\\0\\1\\0\\0\\0\\0'\n"
    "  .. '\\1a\\4test\\0\\0\\16\\0\\1'\n"
    "  .. '\\192\\12\\0\\16\\0\\1\\0\\0\\0\\60\\0\\6\\5hello'\n";

struct snippet {
    const char *name;
    const char *code;       /* returns a string checked against want */
    const char *want;
};

static const struct snippet snippets[] = {
    {"encoding",
     "local d = assert(core.b64url_decode(B64))\n"
     "local e = core.b64url_encode(d)\n"
     "local h = core.hmac_sha256('k', d) .. core.sha256(d)\n"
     "local r = core.random(64)\n"
     "return #d .. ' ' .. tostring(e == B64) .. ' ' .. #h .. ' ' .. #r",
     "9000 true 64 64"},
    {"keys",
     "local k = assert(core.key_load(EC))\n"
     "local j = k:jwk()\n"
     "local s = assert(k:sign('data'))\n"
     "local ok = k:verify('data', s)\n"
     "local pub = k:public_pem()\n"
     "local priv = k:private_pem()\n"
     "local r = assert(core.key_load(RSA))\n"
     "local t = r:thumbprint() .. k:thumbprint() .. k:spec() .. r:alg()\n"
     "k:close()\n"
     "return j.crv .. ' ' .. #s .. ' ' .. tostring(ok) .. ' ' ..\n"
     "  tostring(#pub > 0 and #priv > 0) .. ' ' .. #t",
     "P-256 64 true true 96"},
    {"jws",
     "local k = assert(core.key_load(EC))\n"
     "local a = assert(core.jws(k, { nonce = 'n', url = 'https://x/y',\n"
     "  jwk = k:jwk(), z = { b = 1, a = true } }, '{\"p\":1}'))\n"
     "local b = assert(core.jws_hmac('key', { kid = 'k', url = 'u' }, a))\n"
     "local c = core.jws(k, { nonce = '\\255' }, '')\n"
     "return tostring(#a > 100 and #b > 100) .. ' ' .. tostring(c)",
     "true nil"},
    {"x509",
     "local k = assert(core.key_load(EC))\n"
     "local der = assert(core.csr{ key = k, names = { 'a.test', 'b.test' },\n"
     "  ips = { '192.0.2.1' }, must_staple = true })\n"
     "local info = assert(core.cert_info(CERT))\n"
     "local list = assert(core.pem_split(CERT))\n"
     "local pem = assert(core.pem_encode(der, 'CERTIFICATE REQUEST'))\n"
     "local d2, label = assert(core.pem_decode(pem))\n"
     "local m = core.cert_matches_key(CERT, k)\n"
     "local cp, ck = assert(core.tls_alpn01_cert('a.test', 'ka'))\n"
     "local cp2, ck2 = assert(core.tls_alpn01_cert('192.0.2.1', 'ka', k))\n"
     "local rn = assert(core.reverse_name('::1'))\n"
     "local ci = assert(core.csr_info(der))\n"
     "assert(#ci.names == 2 and ci.ips[1] == '192.0.2.1')\n"
     "return #list .. ' ' .. label .. ' ' .. tostring(d2 == der) .. ' ' ..\n"
     "  tostring(m) .. ' ' .. tostring(#cp > 0 and ck:alg() == 'ES256' and\n"
     "  #cp2 > 0 and ck2 == k) .. ' ' .. #info.names .. ' ' .. #rn",
     "1 CERTIFICATE REQUEST true false true 0 72"},
    {"fs",
     "local p = TMP .. '/d/f'\n"
     "assert(core.mkdir_p(TMP .. '/d/e'))\n"
     "assert(core.write_file(p, 'hello', 384))\n"
     "local s = assert(core.read_file(p))\n"
     "local st = assert(core.stat(p))\n"
     "local l = assert(core.listdir(TMP .. '/d'))\n"
     "local lk = assert(core.lock(TMP .. '/lock', { timeout = 1 }))\n"
     "lk:unlock()\n"
     "local r = assert(core.spawn{ argv = { 'sh', '-c', 'echo $X; cat' },\n"
     "  env = { X = 'x' }, stdin = 'in', timeout = 10 })\n"
     "local env = core.environ()\n"
     "return s .. ' ' .. st.type .. ' ' .. st.mode .. ' ' ..\n"
     "  table.concat(l, ',') .. ' ' .. r.status .. ' ' .. r.stdout",
     "hello file 384 e,f 0 x\nin"},
    {"dns",
     "local r = assert(core.dns_parse(DNS))\n"
     "local bad = core.dns_parse('\\0\\1')\n"
     "return r.rcode .. ' ' .. r[1].type .. ' ' .. r[1].data .. ' ' ..\n"
     "  r[1].name .. ' ' .. tostring(bad)",
     "NOERROR TXT hello a.test. nil"},
    {"http",
     "local c = assert(core.http{ timeout = 5, connect_timeout = 5,\n"
     "  user_agent = 'oom' })\n"
     "local ok, msg, kind = c:request{ method = 'POST',\n"
     "  url = 'https://127.0.0.1:1/', headers = { ['X-A'] = 'b' },\n"
     "  body = 'x' }\n"
     "local st = c:stats()\n"
     "c:close()\n"
     "return tostring(ok) .. ' ' .. kind .. ' ' .. st.requests",
     "nil connect 1"},
    {"responder",
     "local r = assert(core.http01_responder{ address = '127.0.0.1',\n"
     "  port = 0 })\n"
     "assert(r:add('tok', 'body'))\n"
     "local st = r:stats()\n"
     "local rm = r:remove('tok')\n"
     "r:close()\n"
     "local k = assert(core.key_load(EC))\n"
     "local t = assert(core.tls_alpn_responder{ address = '127.0.0.1',\n"
     "  port = 0 })\n"
     "local cp = assert(core.tls_alpn01_cert('a.test', 'ka', k))\n"
     "assert(t:add('a.test', cp, k))\n"
     "t:close()\n"
     "return st.entries .. ' ' .. tostring(rm)",
     "1 true"},
};

static lua_State *
new_state(void)
{
    lua_State *L = lua_newstate(l_alloc, NULL);

    if (L == NULL)
        return NULL;
    luacme_openlibs(L);
    if (luaL_dostring(L, setup) != LUA_OK) {
        fprintf(stderr, "setup: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return NULL;
    }
    return L;
}

/* Run s with allocation number k refused. Returns 1 when it got
 * through (and checks its result), 0 when it failed on memory. */
static int
run_once(const struct snippet *s, long k)
{
    lua_State *L = new_state();
    int st, done = 0;

    if (L == NULL) {
        CHECK(0);
        return 1;
    }
    if (luaL_loadstring(L, s->code) != LUA_OK) {
        fprintf(stderr, "%s: %s\n", s->name, lua_tostring(L, -1));
        CHECK(0);
        lua_close(L);
        return 1;
    }
    budget = k;
    st = lua_pcall(L, 0, 1, 0);
    budget = -1;
    if (st == LUA_OK) {
        done = 1;
        if (lua_type(L, -1) != LUA_TSTRING ||
            strcmp(lua_tostring(L, -1), s->want) != 0) {
            fprintf(stderr, "%s (k=%ld): got %s\n", s->name, k,
                luaL_tolstring(L, -1, NULL));
            CHECK(0);
        }
    } else if (k < 0) {
        /* Without a limit it must pass. */
        fprintf(stderr, "%s: %s\n", s->name, lua_tostring(L, -1));
        CHECK(0);
        done = 1;
    }
    lua_close(L);
    return done;
}

int
main(void)
{
    lua_State *L;
    size_t i;
    long k;

    for (i = 0; i < sizeof(snippets) / sizeof(snippets[0]); i++) {
        const struct snippet *s = &snippets[i];

        /* Once without a limit, then with each allocation refused. */
        CHECK(run_once(s, -1));
        for (k = 0; k < 100000; k++)
            if (run_once(s, k))
                break;
        CHECK(k < 100000);
        printf("%s: got through after %ld refusals\n", s->name, k);
    }
    /* The scratch directory of the fs snippet. */
    L = new_state();
    CHECK(L != NULL && luaL_dostring(L, "assert(core.spawn{ argv = "
        "{ 'rm', '-rf', TMP } }.status == 0)") == LUA_OK);
    if (L != NULL)
        lua_close(L);
    return check_done();
}
