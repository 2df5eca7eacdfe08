// GET /v1/me as a careful Go developer would write it with net/http: the
// second peer stoa is measured against (SPEC §9, tests/bench/peer.py).
//
// The same work as stoa's gateway and auth pool, and as the FastAPI peer,
// on the same stores:
//   - the bearer token is verified with ES256 (golang-jwt) against the
//     stack's JWKS file (keys_dir/jwks.json; an unknown kid re-reads it, at
//     most once a second), with the same issuer, audience and 30 s leeway;
//   - the revocation check of modules/common/revoke.c: one MGET of
//     rv:u:<user>, rv:s:<session> and rv:synced (redigo's pool); a marker
//     refuses, the sentinel admits, and without it Postgres decides;
//   - the profile from the Redis cache (me:<user id>), and on a miss from
//     Postgres (pgx's pool, statements prepared per connection), cached
//     back for 300 s;
//   - errors in the API's JSON error shape, with the request id nginx sends.
//
// Configuration as for the FastAPI peer: PEER_CONFIG names the stack's
// stoa.conf; PEER_TOKEN_CACHE=1 adds a cache of verified tokens (as stoa's
// gateway has). It listens on the unix socket PEER_SOCKET.
//
// Built in GOPATH mode against Debian's golang-github-golang-jwt-jwt-dev,
// golang-github-gomodule-redigo-dev and golang-github-jackc-pgx-v4-dev.
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v4"
	"github.com/gomodule/redigo/redis"
	"github.com/jackc/pgx/v4/pgxpool"
)

const (
	leeway          = 30 * time.Second
	profileTTL      = 300
	jwksReloadMin   = time.Second
	tokenCacheLimit = 10000
)

// The same statements as stoa's (modules/common/revoke.c and the auth
// pool's user_by_id).
const revokeCheck = `SELECT (u.status = 'active') AND ($2::uuid IS NULL OR EXISTS (
 SELECT 1 FROM auth.sessions s WHERE s.id = $2::uuid AND
 s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > now()))
 FROM auth.users u WHERE u.id = $1::uuid`

const userByID = `SELECT u.id::text, u.email, u.name, u.role, u.email_verified_at IS NOT NULL,
 to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
 u.notification_prefs::text, EXISTS (SELECT 1 FROM auth.mfa_totp m WHERE
 m.user_id = u.id AND m.confirmed_at IS NOT NULL)
 FROM auth.users u WHERE u.id = $1::uuid AND u.status <> 'deleted'`

var (
	uuidRe      = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	requestIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
)

// readConfig reads stoa.conf's "key = value" lines; STOA_<KEY> overrides.
func readConfig(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	conf := map[string]string{}
	line := regexp.MustCompile(`^\s*([a-z0-9_]+)\s*=\s*(.*?)\s*$`)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(text), "#") {
			continue
		}
		if m := line.FindStringSubmatch(text); m != nil {
			conf[m[1]] = m[2]
		}
	}
	for k := range conf {
		if v, ok := os.LookupEnv("STOA_" + strings.ToUpper(k)); ok {
			conf[k] = v
		}
	}
	return conf, sc.Err()
}

// keys holds the JWKS file's P-256 keys by kid; an unknown kid re-reads the
// file at most once a second, so a rotation needs no restart.
type keys struct {
	path     string
	mu       sync.RWMutex
	byKid    map[string]*ecdsa.PublicKey
	loadedAt time.Time
}

func (k *keys) load() error {
	k.loadedAt = time.Now()
	data, err := os.ReadFile(k.path)
	if err != nil {
		return err
	}
	var doc struct {
		Keys []struct {
			Kty, Crv, Kid, X, Y string
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	found := map[string]*ecdsa.PublicKey{}
	for _, j := range doc.Keys {
		if j.Kty != "EC" || j.Crv != "P-256" || j.Kid == "" {
			continue
		}
		x, errx := base64.RawURLEncoding.DecodeString(j.X)
		y, erry := base64.RawURLEncoding.DecodeString(j.Y)
		if errx != nil || erry != nil || len(x) != 32 || len(y) != 32 {
			continue
		}
		pub := &ecdsa.PublicKey{Curve: elliptic.P256(),
			X: new(big.Int).SetBytes(x), Y: new(big.Int).SetBytes(y)}
		if !pub.Curve.IsOnCurve(pub.X, pub.Y) {
			continue
		}
		found[j.Kid] = pub
	}
	k.byKid = found
	return nil
}

func (k *keys) get(kid string) *ecdsa.PublicKey {
	k.mu.RLock()
	pub, stale := k.byKid[kid], time.Since(k.loadedAt) >= jwksReloadMin
	k.mu.RUnlock()
	if pub != nil || !stale {
		return pub
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if time.Since(k.loadedAt) >= jwksReloadMin {
		if err := k.load(); err != nil {
			return nil
		}
	}
	return k.byKid[kid]
}

type claims struct {
	Sid string `json:"sid,omitempty"`
	jwt.RegisteredClaims
}

type server struct {
	issuer, audience string
	keys             *keys
	redis            *redis.Pool
	db               *pgxpool.Pool
	parser           *jwt.Parser
	cacheOn          bool
	cacheMu          sync.RWMutex
	cache            map[string]*claims
}

var errUnauthenticated = errors.New("unauthenticated")

func requestID(r *http.Request) string {
	if rid := r.Header.Get("X-Request-Id"); requestIDRe.MatchString(rid) {
		return rid
	}
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func fail(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	rid := requestID(r)
	body, _ := json.Marshal(map[string]interface{}{
		"error":      map[string]interface{}{"code": code, "message": message, "details": map[string]interface{}{}},
		"request_id": rid,
	})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Request-Id", rid)
	if status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	w.WriteHeader(status)
	w.Write(body)
}

// verify returns the token's claims, or an error whose text says why.
func (s *server) verify(authorization string) (*claims, error) {
	if !strings.HasPrefix(authorization, "Bearer ") {
		return nil, errors.New("missing bearer token")
	}
	token := strings.TrimSpace(authorization[7:])
	if s.cacheOn {
		s.cacheMu.RLock()
		c := s.cache[token]
		s.cacheMu.RUnlock()
		if c != nil && c.ExpiresAt != nil && time.Now().Before(c.ExpiresAt.Add(leeway)) {
			return c, nil
		}
	}
	c := &claims{}
	_, err := s.parser.ParseWithClaims(token, c, func(t *jwt.Token) (interface{}, error) {
		kid, _ := t.Header["kid"].(string)
		if pub := s.keys.get(kid); pub != nil {
			return pub, nil
		}
		return nil, errors.New("unknown key")
	})
	if err != nil {
		return nil, errors.New("invalid token")
	}
	// golang-jwt v4 checks exp, nbf and iat when present; stoa requires them
	// all, and the issuer and audience.
	now := time.Now()
	switch {
	case c.ExpiresAt == nil || c.NotBefore == nil || c.IssuedAt == nil:
		return nil, errors.New("invalid token")
	case now.After(c.ExpiresAt.Add(leeway)) || now.Add(leeway).Before(c.NotBefore.Time):
		return nil, errors.New("invalid token")
	case c.Issuer != s.issuer || !c.VerifyAudience(s.audience, true):
		return nil, errors.New("invalid token")
	case !uuidRe.MatchString(c.Subject):
		return nil, errors.New("invalid subject")
	case c.Sid != "" && !uuidRe.MatchString(c.Sid):
		return nil, errors.New("invalid session")
	}
	if s.cacheOn {
		s.cacheMu.Lock()
		if len(s.cache) >= tokenCacheLimit {
			s.cache = map[string]*claims{}
		}
		s.cache[token] = c
		s.cacheMu.Unlock()
	}
	return c, nil
}

// sessionLive: true, false, or an error when neither store can tell.
func (s *server) sessionLive(ctx context.Context, conn redis.Conn, user, session string) (bool, error) {
	sid := session
	if sid == "" {
		sid = "-"
	}
	marks, err := redis.Values(conn.Do("MGET", "rv:u:"+user, "rv:s:"+sid, "rv:synced"))
	if err == nil && len(marks) == 3 {
		if marks[0] != nil || marks[1] != nil {
			return false, nil
		}
		if marks[2] != nil {
			return true, nil
		}
	}
	var sessionArg interface{}
	if session != "" {
		sessionArg = session
	}
	var live *bool
	if err := s.db.QueryRow(ctx, revokeCheck, user, sessionArg).Scan(&live); err != nil {
		if errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no rows") {
			return false, err
		}
		return false, nil
	}
	return live != nil && *live, nil
}

func (s *server) profile(ctx context.Context, user string) ([]byte, error) {
	var id, email, role, created string
	var name, prefs *string
	var verified, mfa bool
	err := s.db.QueryRow(ctx, userByID, user).Scan(&id, &email, &name, &role, &verified,
		&created, &prefs, &mfa)
	if err != nil {
		return nil, err
	}
	p := "{}"
	if prefs != nil {
		p = *prefs
	}
	str := func(v string) string { b, _ := json.Marshal(v); return string(b) }
	nameJSON := "null"
	if name != nil {
		nameJSON = str(*name)
	}
	return []byte(fmt.Sprintf(`{"id":%s,"email":%s,"name":%s,"role":%s,"email_verified":%t,`+
		`"mfa_enabled":%t,"created_at":%s,"notification_prefs":%s}`,
		str(id), str(email), nameJSON, str(role), verified, mfa, str(created), p)), nil
}

func (s *server) me(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		fail(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "GET only")
		return
	}
	c, err := s.verify(r.Header.Get("Authorization"))
	if err != nil {
		fail(w, r, http.StatusUnauthorized, "unauthenticated", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	conn := s.redis.Get()
	defer conn.Close()
	live, err := s.sessionLive(ctx, conn, c.Subject, c.Sid)
	if err != nil {
		fail(w, r, http.StatusServiceUnavailable, "unavailable", "a dependency is unavailable")
		return
	}
	if !live {
		fail(w, r, http.StatusUnauthorized, "unauthenticated", "the session has been revoked")
		return
	}
	key := "me:" + c.Subject
	body, err := redis.Bytes(conn.Do("GET", key))
	if err != nil {
		body, err = s.profile(ctx, c.Subject)
		if err != nil {
			if strings.Contains(err.Error(), "no rows") {
				fail(w, r, http.StatusNotFound, "not_found", "no such user")
			} else {
				fail(w, r, http.StatusServiceUnavailable, "unavailable", "a dependency is unavailable")
			}
			return
		}
		conn.Do("SET", key, body, "EX", profileTTL)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Request-Id", requestID(r))
	w.Write(body)
}

// redisAddress turns stoa's redis_url (redis://[user:password@]host:port or
// unix:///path) into redigo's dial arguments.
func redisDial(url string) func() (redis.Conn, error) {
	opts := []redis.DialOption{redis.DialConnectTimeout(500 * time.Millisecond),
		redis.DialReadTimeout(500 * time.Millisecond), redis.DialWriteTimeout(500 * time.Millisecond)}
	if strings.HasPrefix(url, "unix://") {
		path := strings.TrimPrefix(url, "unix://")
		return func() (redis.Conn, error) { return redis.Dial("unix", path, opts...) }
	}
	return func() (redis.Conn, error) { return redis.DialURL(url, opts...) }
}

func main() {
	conf, err := readConfig(os.Getenv("PEER_CONFIG"))
	if err != nil {
		log.Fatalf("config: %v", err)
	}
	issuer, audience := conf["jwt_issuer"], conf["jwt_audience"]
	if issuer == "" {
		issuer = "https://127.0.0.1:8443"
	}
	if audience == "" {
		audience = "stoa"
	}
	k := &keys{path: filepath.Join(conf["keys_dir"], "jwks.json")}
	if err := k.load(); err != nil {
		log.Fatalf("jwks: %v", err)
	}
	pgconf, err := pgxpool.ParseConfig(conf["database_url"])
	if err != nil {
		log.Fatalf("database_url: %v", err)
	}
	pgconf.MaxConns = 8
	db, err := pgxpool.ConnectConfig(context.Background(), pgconf)
	if err != nil {
		log.Fatalf("postgres: %v", err)
	}
	s := &server{
		issuer: issuer, audience: audience, keys: k, db: db,
		redis:   &redis.Pool{Dial: redisDial(conf["redis_url"]), MaxIdle: 64, IdleTimeout: time.Minute},
		parser:  jwt.NewParser(jwt.WithValidMethods([]string{"ES256"}), jwt.WithoutClaimsValidation()),
		cacheOn: os.Getenv("PEER_TOKEN_CACHE") == "1",
		cache:   map[string]*claims{},
	}
	sock := os.Getenv("PEER_SOCKET")
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/me", s.me)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	go func() {
		stop := make(chan os.Signal, 1)
		signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatalf("serve: %v", err)
	}
	db.Close()
}
