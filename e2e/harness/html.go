package harness

import (
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// Form is an HTML form as a browser would submit it.
type Form struct {
	Action string // absolute
	Method string
	Fields url.Values // hidden and pre-filled inputs
}

// ParseForms returns every form of an HTML page served at base.
func ParseForms(base *url.URL, body string) []Form {
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		return nil
	}
	var forms []Form
	cur := -1 // index of the form being read
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			switch n.Data {
			case "form":
				action, _ := base.Parse(attr(n, "action"))
				if action == nil {
					action = base
				}
				forms = append(forms, Form{Action: action.String(), Method: strings.ToUpper(attr(n, "method")), Fields: url.Values{}})
				prev := cur
				cur = len(forms) - 1
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					walk(c)
				}
				cur = prev
				return
			case "input":
				if cur >= 0 && attr(n, "name") != "" {
					forms[cur].Fields.Add(attr(n, "name"), attr(n, "value"))
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return forms
}

// FormWith returns the first form that has an input named field.
func FormWith(base *url.URL, body, field string) (Form, bool) {
	for _, f := range ParseForms(base, body) {
		if _, ok := f.Fields[field]; ok {
			return f, true
		}
	}
	return Form{}, false
}

// TextByID returns the text content of the element with the given id,
// and whether it exists.
func TextByID(body, id string) (string, bool) {
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		return "", false
	}
	n := findID(doc, id)
	if n == nil {
		return "", false
	}
	return nodeText(n), true
}

// nodeText is the trimmed text content of n.
func nodeText(n *html.Node) string {
	var b strings.Builder
	var text func(*html.Node)
	text = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			text(c)
		}
	}
	text(n)
	return strings.TrimSpace(b.String())
}

// ListByID returns the texts of the <li> children of the element id.
func ListByID(body, id string) []string {
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		return nil
	}
	n := findID(doc, id)
	if n == nil {
		return nil
	}
	var out []string
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if c.Type == html.ElementNode && c.Data == "li" {
			out = append(out, nodeText(c))
		}
	}
	return out
}

func findID(n *html.Node, id string) *html.Node {
	if n.Type == html.ElementNode && attr(n, "id") == id {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if f := findID(c, id); f != nil {
			return f
		}
	}
	return nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
