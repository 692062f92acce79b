// Command gocheck renders the Go templates of integration/functions with Go's own text/template
// and a function map written after confd's (kelseyhightower/confd master: resource/template/
// template_funcs.go and the memkv store) and after the functions abtreece/confd added (its
// documented semantics: default, ternary, ..., include), executed with nil data as confd does.
// tests/functions.rs runs it when `go` is installed and compares its output with expect/ and
// expect-go-only/: the expected files hold what Go prints, not what our engine prints.
//
// Usage: gocheck DATA TEMPLATES OUT, with DATA a file of key=value lines (keys relative to the
// resource prefix, as confd's templates see them); every TEMPLATES/*.tmpl is rendered to
// OUT/<name without .tmpl>.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode"
)

type KVPair struct {
	Key   string
	Value string
}
type KVPairs []KVPair

func (ks KVPairs) Len() int           { return len(ks) }
func (ks KVPairs) Less(i, j int) bool { return ks[i].Key < ks[j].Key }
func (ks KVPairs) Swap(i, j int)      { ks[i], ks[j] = ks[j], ks[i] }

var store = map[string]string{}

func get(key string) (KVPair, error) {
	v, ok := store[key]
	if !ok {
		return KVPair{}, errors.New("key does not exist: " + key)
	}
	return KVPair{key, v}, nil
}
func gets(pattern string) (KVPairs, error) {
	ks := make(KVPairs, 0)
	for k, v := range store {
		m, err := path.Match(pattern, k)
		if err != nil {
			return nil, err
		}
		if m {
			ks = append(ks, KVPair{k, v})
		}
	}
	sort.Sort(ks)
	return ks, nil
}
func getvs(pattern string) ([]string, error) {
	vs := make([]string, 0)
	ks, err := gets(pattern)
	if err != nil {
		return nil, err
	}
	for _, kv := range ks {
		vs = append(vs, kv.Value)
	}
	sort.Strings(vs)
	return vs, nil
}
func getv(key string, v ...string) (string, error) {
	kv, err := get(key)
	if err != nil {
		if len(v) > 0 {
			return v[0], nil
		}
		return "", err
	}
	return kv.Value, nil
}
func exists(key string) bool { _, err := get(key); return err == nil }

func pathToTerms(filePath string) []string { return strings.Split(path.Clean(filePath), "/") }
func samePrefixTerms(pre, test []string) bool {
	if len(pre) > len(test) {
		return false
	}
	for i := 0; i < len(pre); i++ {
		if pre[i] != test[i] {
			return false
		}
	}
	return true
}
func stripKey(key, prefix string) string {
	return strings.TrimPrefix(strings.TrimPrefix(key, prefix), "/")
}
func ls(filePath string) []string {
	vs := make([]string, 0)
	m := map[string]bool{}
	prefix := pathToTerms(filePath)
	for k := range store {
		if k == filePath {
			m[path.Base(k)] = true
			continue
		}
		target := pathToTerms(path.Dir(k))
		if samePrefixTerms(prefix, target) {
			m[strings.Split(stripKey(k, filePath), "/")[0]] = true
		}
	}
	for k := range m {
		vs = append(vs, k)
	}
	sort.Strings(vs)
	return vs
}
func lsdir(filePath string) []string {
	vs := make([]string, 0)
	m := map[string]bool{}
	prefix := pathToTerms(filePath)
	for k := range store {
		if strings.HasPrefix(k, filePath) {
			items := pathToTerms(path.Dir(k))
			if samePrefixTerms(prefix, items) && (len(items)-len(prefix) >= 1) {
				m[items[len(prefix):][0]] = true
			}
		}
	}
	for k := range m {
		vs = append(vs, k)
	}
	sort.Strings(vs)
	return vs
}

type byLength []string

func (s byLength) Len() int           { return len(s) }
func (s byLength) Swap(i, j int)      { s[i], s[j] = s[j], s[i] }
func (s byLength) Less(i, j int) bool { return len(s[i]) < len(s[j]) }

type byKVLength []KVPair

func (s byKVLength) Len() int           { return len(s) }
func (s byKVLength) Swap(i, j int)      { s[i], s[j] = s[j], s[i] }
func (s byKVLength) Less(i, j int) bool { return len(s[i].Key) < len(s[j].Key) }

func lookupIP(data string) []string {
	ips, err := net.LookupIP(data)
	if err != nil {
		return nil
	}
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	sort.Strings(s)
	return s
}

func funcs() template.FuncMap {
	return template.FuncMap{
		"exists": exists, "get": get, "gets": func(p string) ([]KVPair, error) { ks, err := gets(p); return []KVPair(ks), err },
		"getv": getv, "getvs": getvs, "ls": ls, "lsdir": lsdir,
		"base": path.Base, "split": strings.Split, "join": strings.Join, "dir": path.Dir,
		"json": func(data string) (map[string]interface{}, error) {
			var ret map[string]interface{}
			err := json.Unmarshal([]byte(data), &ret)
			return ret, err
		},
		"jsonArray": func(data string) ([]interface{}, error) {
			var ret []interface{}
			err := json.Unmarshal([]byte(data), &ret)
			return ret, err
		},
		"map": func(values ...interface{}) (map[string]interface{}, error) {
			if len(values)%2 != 0 {
				return nil, errors.New("invalid map call")
			}
			d := make(map[string]interface{}, len(values)/2)
			for i := 0; i < len(values); i += 2 {
				key, ok := values[i].(string)
				if !ok {
					return nil, errors.New("map keys must be strings")
				}
				d[key] = values[i+1]
			}
			return d, nil
		},
		"getenv": func(key string, v ...string) string {
			d := ""
			if len(v) > 0 {
				d = v[0]
			}
			val := os.Getenv(key)
			if val == "" {
				return d
			}
			return val
		},
		"datetime": time.Now, "toUpper": strings.ToUpper, "toLower": strings.ToLower,
		"contains": strings.Contains, "replace": strings.Replace, "trimSuffix": strings.TrimSuffix,
		"lookupIP": lookupIP,
		"lookupIPV4": func(d string) []string {
			var a []string
			for _, ip := range lookupIP(d) {
				if strings.Contains(ip, ".") {
					a = append(a, ip)
				}
			}
			return a
		},
		"lookupIPV6": func(d string) []string {
			var a []string
			for _, ip := range lookupIP(d) {
				if strings.Contains(ip, ":") {
					a = append(a, ip)
				}
			}
			return a
		},
		"lookupSRV": func(service, proto, name string) []*net.SRV {
			_, addrs, err := net.LookupSRV(service, proto, name)
			if err != nil {
				return []*net.SRV{}
			}
			return addrs
		},
		"fileExists":   func(p string) bool { _, err := os.Stat(p); return !os.IsNotExist(err) },
		"base64Encode": func(d string) string { return base64.StdEncoding.EncodeToString([]byte(d)) },
		"base64Decode": func(d string) (string, error) { s, err := base64.StdEncoding.DecodeString(d); return string(s), err },
		"parseBool":    strconv.ParseBool,
		"reverse": func(values interface{}) interface{} {
			switch values.(type) {
			case []string:
				v := values.([]string)
				for l, r := 0, len(v)-1; l < r; l, r = l+1, r-1 {
					v[l], v[r] = v[r], v[l]
				}
			case []KVPair:
				v := values.([]KVPair)
				for l, r := 0, len(v)-1; l < r; l, r = l+1, r-1 {
					v[l], v[r] = v[r], v[l]
				}
			}
			return values
		},
		"sortByLength":   func(v []string) []string { sort.Sort(byLength(v)); return v },
		"sortKVByLength": func(v []KVPair) []KVPair { sort.Sort(byKVLength(v)); return v },
		"seq": func(first, last int) []int {
			var arr []int
			for i := first; i <= last; i++ {
				arr = append(arr, i)
			}
			return arr
		},
		"atoi": strconv.Atoi,
		"add":  func(a, b int) int { return a + b }, "sub": func(a, b int) int { return a - b },
		"div": func(a, b int) int { return a / b }, "mod": func(a, b int) int { return a % b },
		"mul": func(a, b int) int { return a * b },
	}
}

// The functions of abtreece/confd, written from their documented behaviour.

// zero tells the values that default, empty and coalesce treat as absent.
func zero(v interface{}) bool {
	if v == nil {
		return true
	}
	r := reflect.ValueOf(v)
	switch r.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return r.Len() == 0
	case reflect.Bool:
		return !r.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return r.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return r.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return r.Float() == 0
	case reflect.Ptr, reflect.Interface:
		return r.IsNil()
	case reflect.Struct:
		return r.IsZero()
	}
	return false
}

func indentLines(n int, s string) string {
	if s == "" {
		return ""
	}
	if n < 0 {
		n = 0
	}
	pad := strings.Repeat(" ", n)
	return pad + strings.ReplaceAll(s, "\n", "\n"+pad)
}

// words splits at _ - and spaces, and where upper case starts a new word (HTTPServer: HTTP Server).
func words(s string) []string {
	rs := []rune(s)
	var out []string
	cur := []rune{}
	for i, r := range rs {
		if r == '_' || r == '-' || r == ' ' {
			if len(cur) > 0 {
				out = append(out, string(cur))
				cur = []rune{}
			}
			continue
		}
		if unicode.IsUpper(r) && len(cur) > 0 {
			nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if nextLower || !unicode.IsUpper(rs[i-1]) {
				out = append(out, string(cur))
				cur = []rune{}
			}
		}
		cur = append(cur, r)
	}
	if len(cur) > 0 {
		out = append(out, string(cur))
	}
	return out
}

func joinWords(s, sep string, camel bool) string {
	ws := words(s)
	for i, w := range ws {
		w = strings.ToLower(w)
		if camel && i > 0 {
			r := []rune(w)
			r[0] = unicode.ToUpper(r[0])
			w = string(r)
		}
		ws[i] = w
	}
	return strings.Join(ws, sep)
}

func sortedKeys(m map[string]interface{}) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func ifaceAddr(name string, v4 bool) string {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return ""
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		if (n.IP.To4() != nil) == v4 {
			if v4 {
				return n.IP.To4().String()
			}
			return n.IP.String()
		}
	}
	return ""
}

func forkFuncs(fm template.FuncMap, dir string) {
	fm["default"] = func(d, v interface{}) interface{} {
		if zero(v) {
			return d
		}
		return v
	}
	fm["ternary"] = func(t, f interface{}, c bool) interface{} {
		if c {
			return t
		}
		return f
	}
	fm["coalesce"] = func(vs ...interface{}) interface{} {
		for _, v := range vs {
			if !zero(v) {
				return v
			}
		}
		return nil
	}
	fm["empty"] = zero
	fm["toJson"] = func(v interface{}) (string, error) { b, err := json.Marshal(v); return string(b), err }
	fm["toPrettyJson"] = func(v interface{}) (string, error) {
		b, err := json.MarshalIndent(v, "", "  ")
		return string(b), err
	}
	fm["fromJson"] = func(s string) (interface{}, error) {
		var v interface{}
		err := json.Unmarshal([]byte(s), &v)
		return v, err
	}
	fm["indent"] = indentLines
	fm["nindent"] = func(n int, s string) string { return "\n" + indentLines(n, s) }
	fm["quote"] = strconv.Quote
	fm["squote"] = func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	fm["regexMatch"] = regexp.MatchString
	fm["regexFind"] = func(p, s string) (string, error) {
		re, err := regexp.Compile(p)
		if err != nil {
			return "", err
		}
		return re.FindString(s), nil
	}
	fm["regexReplaceAll"] = func(p, s, r string) (string, error) {
		re, err := regexp.Compile(p)
		if err != nil {
			return "", err
		}
		return re.ReplaceAllString(s, r), nil
	}
	fm["trimPrefix"] = strings.TrimPrefix
	fm["repeat"] = func(n int, s string) string {
		if n <= 0 {
			return ""
		}
		return strings.Repeat(s, n)
	}
	fm["nospace"] = func(s string) string {
		return strings.Map(func(r rune) rune {
			if unicode.IsSpace(r) {
				return -1
			}
			return r
		}, s)
	}
	fm["snakecase"] = func(s string) string { return joinWords(s, "_", false) }
	fm["camelcase"] = func(s string) string { return joinWords(s, "", true) }
	fm["kebabcase"] = func(s string) string { return joinWords(s, "-", false) }
	fm["dict"] = fm["map"]
	fm["list"] = func(vs ...interface{}) []interface{} { return vs }
	fm["hasKey"] = func(m map[string]interface{}, k string) bool { _, ok := m[k]; return ok }
	fm["keys"] = sortedKeys
	fm["values"] = func(m map[string]interface{}) []interface{} {
		var vs []interface{}
		for _, k := range sortedKeys(m) {
			vs = append(vs, m[k])
		}
		if vs == nil {
			vs = []interface{}{}
		}
		return vs
	}
	fm["append"] = func(l []interface{}, v interface{}) []interface{} {
		return append(append([]interface{}{}, l...), v)
	}
	fm["pluck"] = func(k string, ms ...map[string]interface{}) []interface{} {
		var vs []interface{}
		for _, m := range ms {
			if v, ok := m[k]; ok {
				vs = append(vs, v)
			}
		}
		return vs
	}
	fm["sha256sum"] = func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	fm["hostname"] = os.Hostname
	fm["lookupIfaceIPV4"] = func(n string) string { return ifaceAddr(n, true) }
	fm["lookupIfaceIPV6"] = func(n string) string { return ifaceAddr(n, false) }
	// include: a template of dir, rendered with the same functions and the data as dot; not
	// outside dir, not recursively, at most 10 deep.
	var stack []string
	fm["include"] = func(name string, data ...interface{}) (string, error) {
		p := filepath.Join(dir, name)
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("include %q: outside the templates directory", name)
		}
		for _, s := range stack {
			if s == p {
				return "", fmt.Errorf("include %q: cycle", name)
			}
		}
		if len(stack) >= 10 {
			return "", fmt.Errorf("include %q: too deep", name)
		}
		stack = append(stack, p)
		defer func() { stack = stack[:len(stack)-1] }()
		text, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		t, err := template.New(filepath.Base(p)).Funcs(fm).Parse(string(text))
		if err != nil {
			return "", err
		}
		var dot interface{}
		if len(data) > 0 {
			dot = data[0]
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, dot)
		return buf.String(), err
	}
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: gocheck DATA TEMPLATES OUT")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		kv := strings.SplitN(l, "=", 2)
		store[kv[0]] = kv[1]
	}
	srcs, err := filepath.Glob(filepath.Join(os.Args[2], "*.tmpl"))
	if err != nil {
		fail(err)
	}
	for _, src := range srcs {
		// As confd: the template is named after its file, and executed with nil data.
		fm := funcs()
		forkFuncs(fm, os.Args[2])
		t, err := template.New(filepath.Base(src)).Funcs(fm).ParseFiles(src)
		if err != nil {
			fail(err)
		}
		var buf bytes.Buffer
		if err := t.Execute(&buf, nil); err != nil {
			fail(err)
		}
		dest := filepath.Join(os.Args[3], strings.TrimSuffix(filepath.Base(src), ".tmpl"))
		if err := os.WriteFile(dest, buf.Bytes(), 0o644); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gocheck:", err)
	os.Exit(1)
}
