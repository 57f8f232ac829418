// Documents relay-compiler checks against the committed schema.graphql (clients/check.mjs
// runs it): the Relay conventions a frontend team relies on, `node(id:)` refetching, a
// `@refetchable` fragment and a `@connection` paged with `first`/`after`.

export const customerQuery = graphql`
  query CustomerQuery($id: ID!) {
    customer(id: $id) {
      displayName
      ...Customer_timeline
    }
  }
`;

export const nodeQuery = graphql`
  query CustomerNodeQuery($id: ID!) {
    node(id: $id) {
      id
      ... on Customer {
        displayName
      }
    }
  }
`;

export const timelineFragment = graphql`
  fragment Customer_timeline on Customer
  @refetchable(queryName: "CustomerTimelinePaginationQuery")
  @argumentDefinitions(first: { type: "Int", defaultValue: 10 }, after: { type: "String" }) {
    timeline(first: $first, after: $after) @connection(key: "Customer_timeline") {
      edges {
        node {
          id
          channel
          text
          occurredAt
        }
      }
    }
  }
`;

export const inboxQuery = graphql`
  query CustomerInboxQuery($first: Int!, $after: String) {
    inbox(first: $first, after: $after) @connection(key: "Customer_inbox") {
      edges {
        node {
          id
          status
          customer {
            id
            displayName
          }
        }
      }
    }
  }
`;
